"""transforms.plain recognizes data objects the pydantic models accept as they are; its
answer must be the model's, field for field, or None (the model decides)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.support.strategies import data_object, valid_data, value
from transforms.decode import _DATA_MODELS, DATA_SPECS, canonical_data_keys
from transforms.plain import PLAIN_DATA
from transforms.records import AML_EVENT_TYPES

ODD = ["", " ", None, 0, 1, -1, 2**63 - 1, True, False, 1.5, -0.0, [], {}, [{}], {"a": None}, "x",
       "2024-01-01T00:00:00Z", "2024-13-01", "not a time", "9999-12-31T23:59:59.9999999-01:00"]


def _same_as_model(event_type: str, data: dict) -> bool:
    """Asserts plain's answer agrees with the model's; True when plain took the data."""
    spec = DATA_SPECS[event_type]
    if not canonical_data_keys(data, spec):
        return False  # plain is only ever asked about canonical keys
    plain = PLAIN_DATA[event_type](data)
    if plain is None:
        return False
    model = spec.validate(data)  # raises if plain accepted what the model rejects
    for name in plain._fields:
        ours, theirs = getattr(plain, name), getattr(model, name)
        assert (ours, type(ours)) == (theirs, type(theirs)), (event_type, name, data)
    return True


def test_the_plain_tuples_carry_the_models_attributes():
    for event_type, check in PLAIN_DATA.items():
        plain = check(valid_data(event_type))
        assert plain is not None, event_type
        assert plain._fields == tuple(_DATA_MODELS[event_type].model_fields), event_type


@pytest.mark.parametrize("event_type", AML_EVENT_TYPES)
def test_each_field_set_to_each_odd_value_or_dropped(event_type):
    taken = 0
    for name in valid_data(event_type):
        for change in ["drop"] + ODD:
            data = valid_data(event_type)
            if change == "drop":
                del data[name]
            else:
                data[name] = change
            taken += _same_as_model(event_type, data)
    assert taken > 0  # the plain answer is exercised, not only its refusals


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_type=st.sampled_from(AML_EVENT_TYPES), changes=st.dictionaries(
    st.sampled_from(["runId", "runStatus", "runTags", "modelVersion", "modelName", "modelTags",
                     "serviceName", "modelIds", "serviceTags", "dataDriftId", "driftCoefficient",
                     "startTime", "endTime", "experimentName", "createdBy"]),
    st.one_of(value, st.sampled_from(ODD)), max_size=4))
def test_mutated_valid_data_gets_the_models_answer(event_type, changes):
    _same_as_model(event_type, {**valid_data(event_type), **changes})


@settings(max_examples=500, deadline=None)
@given(event_type=st.sampled_from(AML_EVENT_TYPES), data=data_object)
def test_arbitrary_data_gets_the_models_answer(event_type, data):
    _same_as_model(event_type, data)


def test_a_refused_object_is_one_the_model_rejects_or_converts():
    # refusals are not errors: the model decides, and may accept (e.g. after conversion)
    data = {**valid_data(AML_EVENT_TYPES[0]), "runId": 5}
    assert PLAIN_DATA[AML_EVENT_TYPES[0]](data) is None
    with pytest.raises(ValidationError):
        DATA_SPECS[AML_EVENT_TYPES[0]].validate(data)
