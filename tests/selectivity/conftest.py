"""Selectivity tests run single-threaded: on a shared 2-core machine, tiny ops otherwise wait for a busy core."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
