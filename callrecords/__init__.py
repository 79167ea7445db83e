"""The operator's package: what the command line runs and the deployed app never imports
(reports, HTML pages, local caches). It builds on shared/, never the other way round, and is
left out of the Functions deployment (.funcignore)."""
