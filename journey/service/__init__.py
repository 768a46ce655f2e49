"""The agents' query service and console (`journey serve`): HTTP answers that are fresh to
the last event, or say how far behind they are. See docs/service.md."""

from journey.service.app import create_app
from journey.service.runtime import ServiceOptions

__all__ = ["ServiceOptions", "create_app"]
