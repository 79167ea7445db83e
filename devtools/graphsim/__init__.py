"""A local stand-in for the Microsoft Graph callRecords and subscriptions endpoints, plus an
App Service managed-identity token endpoint, following the documented behaviour (paging,
404 windows, handshake, notifications, throttling) so the archiver meets it before Azure does.

Start it with ``python -m devtools.graphsim`` or ``devtools.graphsim.process.start_simulator``;
drive it with ``devtools.graphsim.client.SimClient``.
"""
