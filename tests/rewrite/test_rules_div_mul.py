"""y * (1 / s) and y * Reciprocal(s) -> y / s."""

from __future__ import annotations

import numpy as np
import pytest

from .util import check_fuses, check_not_fused

BIND = [{"N": 1}, {"N": 3}]


def text(body: str, t: str = "float", s: str = "N, 4, 1") -> str:
    return f"""
<ir_version: 8, opset_import: ["" : 17]>
g ({t}[N, 4, 8] y, {t}[{s}] s) => ({t}[N, 4, 8] z) {{
  {body}
}}
"""


FORMS = {
    "div": "r = Div (one, s)\n  z = Mul (y, r)",
    "div-commuted": "r = Div (one, s)\n  z = Mul (r, y)",
    "reciprocal": "r = Reciprocal (s)\n  z = Mul (y, r)",
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("t,dtype", [("float", np.float32), ("float16", np.float16), ("double", np.float64)])
def test_div_mul(form: str, t: str, dtype: type) -> None:
    tol = {"rtol": 1e-2, "atol": 1e-2} if dtype == np.float16 else {}
    m = check_fuses(text(FORMS[form], t), {"one": np.array(1.0, dtype)}, "fuse-div-mul", {"Div": 1},
                    bindings=BIND, **tol)
    (d,) = list(m.graph)
    assert [v.name for v in d.inputs] == ["y", "s"]


def test_one_of_rank_no_larger_than_s() -> None:
    check_fuses(text(FORMS["div"]), {"one": np.ones((1, 1), np.float32)}, "fuse-div-mul", {"Div": 1}, bindings=BIND)


# one negative test per precondition
def test_not_one() -> None:
    check_not_fused(text(FORMS["div"]), {"one": np.array(2.0, np.float32)}, "fuse-div-mul", "is 2, not 1")


def test_integer_division_truncates() -> None:
    check_not_fused(text(FORMS["div"], "int32"), {"one": np.array(1, np.int32)}, "fuse-div-mul", "element type 6")


def test_one_would_broadcast_s_to_a_higher_rank() -> None:
    # s [4, 1] against a [1, 1, 1] one: 1 / s is [1, 4, 1]; y / s would still be [N, 4, 8], but only because y
    # has rank 3; the rule does not reason about y
    check_not_fused(text(FORMS["div"], s="4, 1"), {"one": np.ones((1, 1, 1), np.float32)}, "fuse-div-mul",
                    "broadcasting changes the output shape")


def test_reciprocal_read_elsewhere() -> None:
    body = FORMS["reciprocal"] + "\n  w = Neg (r)"
    t = text(body).replace("float[N, 4, 8] z)", "float[N, 4, 8] z, float[N, 4, 1] w)")
    check_not_fused(t, {}, "fuse-div-mul", "also read by Neg")


def test_type_of_an_intermediate_from_the_symbol_table() -> None:
    # s = Sqrt(v) has no declared type: the element type comes from shape/type inference
    body = "s2 = Sqrt (s)\n  r = Reciprocal (s2)\n  z = Mul (y, r)"
    check_fuses(text(body), {}, "fuse-div-mul", {"Sqrt": 1, "Div": 1}, bindings=BIND)
