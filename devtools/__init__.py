"""Local-only tools: the development host, the Graph simulator, Azurite control."""
