"""`validation_problem`, where ucity turns a body pydantic refused into a 400 ProblemDetails (the ops and alarms
APIs): a validator's own text comes without pydantic's "Value error, " prefix, its two halves in the two halves of
the detail (FIX-D)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from ucity.alarms.contacts import validation_problem


class _Body(BaseModel):
    phone: str
    minutes: int = 0

    @field_validator("phone")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if len(value) < 7:
            raise ValueError("전화번호가 너무 짧습니다 / the phone number is too short (at least 7 digits)")
        return value


def test_a_validators_text_comes_without_pydantics_prefix() -> None:
    with pytest.raises(ValidationError) as caught:
        _Body.model_validate({"phone": "123", "minutes": "many"})
    problem = validation_problem(caught.value).to_problem()
    assert problem["status"] == 400 and problem["type"].endswith("/BadRequestData")
    assert "Value error" not in problem["detail"]
    ko, en = problem["detail"].split(" / ")  # one " / ": each half of the validator's text in its half
    assert ko == "잘못된 값: phone: 전화번호가 너무 짧습니다; minutes: Input should be a valid integer, unable to parse string " \
                 "as an integer"
    assert en == "invalid value: phone: the phone number is too short (at least 7 digits); minutes: Input should be a " \
                 "valid integer, unable to parse string as an integer"
