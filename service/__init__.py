"""The HelpSeek HTTP service: ``service.app.create_app(settings)``; run with ``python -m service``."""

__all__: list[str] = []
