"""The code the functions share: one small module per job (see function_app.py for the map)."""
