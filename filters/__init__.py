"""plait's built-in filters, registered through the ``plait.filters`` entry point."""
