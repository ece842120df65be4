"""The P4M model: the group's multiplication table, equivariance layer by layer, invariance of the
logit to the 8 dihedral views (in training and eval mode), and TTA skipped because of it."""

from __future__ import annotations

import pytest
import torch

from metastasis.models import create_model, effective_tta
from metastasis.models.p4m_cnn import (
    ORDER,
    P4MCNN,
    GroupConv,
    LiftingConv,
    cayley,
    inverse,
    pose_permutation,
    transform,
)
from metastasis.transforms.augment import d4_view

SMALL = {"widths": (4, 6), "dense": 8, "in_size": 32}  # two stages: 32 -> 16 -> 8


def test_cayley_table_is_the_dihedral_group_of_order_8() -> None:
    table = cayley()
    assert all(sorted(row) == list(range(ORDER)) for row in table)  # a Latin square
    assert table[0] == tuple(range(ORDER))  # 0 is the identity
    assert table[1][1] == 2 and table[1][2] == 3 and table[1][3] == 0  # quarter turns: Z4
    assert all(table[g][g] == 0 for g in range(4, ORDER))  # every reflection is an involution
    assert table[1][4] != table[4][1]  # not commutative: rotate-then-flip != flip-then-rotate
    x = torch.arange(12.0).reshape(3, 4)
    for a in range(ORDER):  # a flip, then torch.rot90's quarter turns
        assert torch.equal(transform(x, a), torch.rot90(x.flip(-1) if a >= 4 else x, a % 4))
        assert torch.equal(transform(transform(x, a), inverse(a)), x)
        for b in range(ORDER):  # the table is the composition of the transforms
            assert torch.equal(transform(transform(x, b), a), transform(x, table[a][b]))


def _pose_action(f: torch.Tensor, h: int) -> torch.Tensor:
    """How a pose feature map moves when the input is transformed by ``h``: every map is
    transformed by h and pose channel g takes what pose h^-1 g held."""
    n, c, hh, ww = f.shape
    poses = f.reshape(n, c // ORDER, ORDER, hh, ww)
    source = [cayley()[inverse(h)][g] for g in range(ORDER)]
    return transform(poses[:, :, source], h).reshape(n, c, hh, ww)


@pytest.mark.parametrize("h", range(1, ORDER))
def test_lifting_and_group_convolutions_are_equivariant(h: int) -> None:
    torch.manual_seed(h)
    lift, conv = LiftingConv(3, 4), GroupConv(4, 5)
    x = torch.randn(2, 3, 11, 11)
    with torch.no_grad():
        f = lift(x)
        torch.testing.assert_close(lift(transform(x, h)), _pose_action(f, h), atol=1e-5, rtol=0)
        g = conv(f)
        torch.testing.assert_close(conv(_pose_action(f, h)), _pose_action(g, h), atol=1e-5, rtol=0)
    assert pose_permutation().shape == (ORDER, ORDER)


@pytest.mark.parametrize("train", [False, True])
def test_the_logits_of_the_8_dihedral_views_agree(train: bool) -> None:
    torch.manual_seed(0)
    model = create_model("p4m-cnn", **SMALL).train(train)
    images = torch.rand(3, 32, 32, 3)  # NHWC, as predict's views are made
    views = torch.stack([model(d4_view(images, k).permute(0, 3, 1, 2)) for k in range(ORDER)])
    assert views.shape == (ORDER, 3)
    torch.testing.assert_close(views, views[:1].expand_as(views), atol=1e-5, rtol=0)
    assert views[0].std() > 0  # distinct patches, distinct outputs: not a constant model


def test_a_size_that_breaks_invariance_is_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 2 \\*\\* 2"):
        P4MCNN(widths=(4, 6), in_size=30)


def test_d4_tta_is_skipped_only_for_invariant_models() -> None:
    assert effective_tta("p4m-cnn", "d4") == "none"
    assert effective_tta("baseline-cnn", "d4") == "d4"
    assert effective_tta("p4m-cnn", "none") == "none"
