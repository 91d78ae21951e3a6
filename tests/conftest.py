import itertools
import pathlib

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")

# A persistent compilation cache shared by the xdist workers: the experiment smoke tests
# run each experiment twice (the second time to check that the same seed gives the same
# JSON) and most of a quick run is XLA compiling, which the second run then skips. Keys
# hash the program and the jax version, so a stale entry is never used.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax_compilation"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@pytest.fixture
def getkey():
    """Fresh PRNG keys, deterministic per test: ``k = getkey()``."""
    counter = itertools.count()
    base = jax.random.PRNGKey(0)
    return lambda: jax.random.fold_in(base, next(counter))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
