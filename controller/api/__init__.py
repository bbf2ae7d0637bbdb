"""The controller's HTTP API, one module per route group, assembled by `controller_app.create_app`."""
