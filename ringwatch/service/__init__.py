"""The FastAPI service: REST API, real-time scoring and alert delivery."""
