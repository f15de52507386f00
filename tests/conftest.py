import pytest
from helpers import make_piano_maestro


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A prepared cache of piano-like audio: 4 train, 1 validation, 1 test piece of 3 s."""
    from audiogen.data import list_maestro, prepare_cache
    from audiogen.frontend import FrontendConfig

    root = make_piano_maestro(tmp_path_factory.mktemp("maestro"), {"train": 4, "validation": 1, "test": 1})
    cache = tmp_path_factory.mktemp("cache")
    report = prepare_cache(list_maestro(root), cache, FrontendConfig(), workers=1, progress=False)
    assert report.prepared == 6
    return cache
