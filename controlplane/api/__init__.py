"""The resource API: HTTP + JSON on port 15014, protected by the admin token."""
