import os

import pytest

# scikit-learn's common checks run hundreds of tiny fits: more threads only
# add overhead on these small machines (and pytest-xdist already runs one
# worker per core), so torch and the BLAS libraries use one thread each.
import torch
from threadpoolctl import threadpool_limits

torch.set_num_threads(1)
threadpool_limits(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def rng():
    import numpy as np

    return np.random.RandomState(0)
