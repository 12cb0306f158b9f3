import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture()
def tiny_unet():
    """A fresh ldm-style test UNet (tests/ldm_like.py), the same weights every time."""
    from tests.ldm_like import tiny_unet as build

    return build()


@pytest.fixture()
def hook_count():
    """hook_count(model): forward (pre-)hooks left on the model's modules."""
    from tests.ldm_like import hook_count as count

    return count
