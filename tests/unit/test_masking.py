import pytest

from app.people.masking import mask_phone


@pytest.mark.parametrize("phone, masked", [
    ("13812345678", "138****5678"),
    ("138-1234-5678", "138****5678"),
    ("+86 138 1234 5678", "138****5678"),
    ("12345", "***45"),
    ("", ""),
    (None, ""),
])
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked
