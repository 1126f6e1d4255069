"""The MPI part of a task's resource_specification: counts filled in, and mistakes named."""

from __future__ import annotations

import pytest

from gce.transport.resources import MpiShape, mpi_shape


@pytest.mark.parametrize("spec, shape", [
    ({"num_nodes": 2}, MpiShape(2, 1, 2)),
    ({"num_ranks": 3}, MpiShape(1, 3, 3)),
    ({"num_nodes": 2, "num_ranks": 5}, MpiShape(2, 3, 5)),
    ({"num_nodes": 2, "ranks_per_node": 4}, MpiShape(2, 4, 8)),
    ({"ranks_per_node": 2, "launcher_options": "--bind-to none"}, MpiShape(1, 2, 2, "--bind-to none")),
    ({"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2, "walltime": 5}, MpiShape(1, 2, 2)),
])
def test_missing_counts_are_filled_in(spec, shape):
    assert mpi_shape(spec) == shape
    assert mpi_shape(shape.as_spec()) == shape


def test_a_spec_without_mpi_keys_has_no_shape():
    assert mpi_shape({}) is None
    assert mpi_shape({"walltime": 3, "priority": 1}) is None


@pytest.mark.parametrize("spec, error, words", [
    ({"num_nodes": 0}, ValueError, "resource_specification['num_nodes'] must be at least 1, not 0"),
    ({"num_ranks": -2}, ValueError, "resource_specification['num_ranks'] must be at least 1, not -2"),
    ({"num_ranks": 2.5}, TypeError, "resource_specification['num_ranks'] must be a whole number (e.g. 2), "
                                    "not float 2.5"),
    ({"ranks_per_node": "4"}, TypeError, "not str '4'"),
    ({"num_nodes": True}, TypeError, "not bool True"),
    ({"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 3}, ValueError,
     "num_ranks 3 is more than num_nodes x ranks_per_node (1 x 2 = 2)"),
    ({"num_nodes": 3, "num_ranks": 2}, ValueError, "num_ranks 2 is fewer than num_nodes 3"),
    ({"num_nodes": 1, "launcher_options": ["-v"]}, TypeError, "'launcher_options'] must be a string"),
])
def test_a_bad_spec_is_refused_naming_the_key(spec, error, words):
    with pytest.raises(error) as info:
        mpi_shape(spec)
    assert words in str(info.value)
