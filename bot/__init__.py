"""donorbot: the service (app factory, settings, CLI, WeChat channel, dispatcher, workers)."""
