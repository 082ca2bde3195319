"""One module per capability; each declares a Router. They are included in bot/dispatcher.py."""
