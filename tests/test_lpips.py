"""Tests of the LPIPS metric (``reenact.metrics.lpips``).

No real AlexNet ImageNet weights are available to the tests. The "with weights" tests save the feature layers
of a *randomly initialised* torchvision AlexNet under the expected torch-hub file name: they exercise the
lookup, loading and state handling only. The numbers they produce are NOT real LPIPS values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("lpips")

from reenact import weights  # noqa: E402
from reenact.metrics import DEFAULT_METRICS, QUICK_METRICS, build_metrics, get_metric_class  # noqa: E402
from reenact.metrics.lpips import LPIPS, build_lpips  # noqa: E402

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


@pytest.fixture
def isolated(no_pretrained_weights: Path) -> Path:
    return no_pretrained_weights


@pytest.fixture
def random_alexnet(isolated: Path) -> Path:
    """Randomly initialised AlexNet features saved as ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``.

    Random weights: this only tests the loading path; the resulting distances are not real LPIPS.
    """
    import torchvision

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in torchvision.models.alexnet(weights=None).features.state_dict().items()}
    path = isolated / "torch" / "hub" / "checkpoints" / ALEXNET_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path


def _frames(seed: int, n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registered_in_defaults_not_quick() -> None:
    assert get_metric_class("lpips") is LPIPS
    assert LPIPS.protocols == ("same_identity",) and not LPIPS.higher_is_better
    assert "lpips" in DEFAULT_METRICS and "lpips" not in QUICK_METRICS


def test_unavailable_without_backbone_weights_names_the_file(isolated: Path) -> None:
    metric = LPIPS()
    reason = metric.unavailable_reason()
    assert reason is not None and ALEXNET_FILE in reason
    assert str(isolated / "torch" / "hub" / "checkpoints" / ALEXNET_FILE) in reason  # where it was looked for
    result = metric.result()
    assert result.value is None and result.count == 0
    assert ALEXNET_FILE in (result.reason or "")
    assert "missing" in result.backend
    vgg = LPIPS(net="vgg").unavailable_reason()
    assert vgg is not None and "vgg16-397923af.pth" in vgg
    with pytest.raises(weights.MissingWeightsError, match=ALEXNET_FILE):
        metric.per_frame(_frames(0), _frames(1))


def test_rejects_a_file_that_is_not_alexnet(isolated: Path) -> None:
    path = isolated / "torch" / "hub" / "checkpoints" / ALEXNET_FILE
    path.parent.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(1)}, path)
    linear = weights.resolve("lpips-linear-alex")
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        build_lpips("alex", path, linear)


def test_with_random_backbone_loading_path(random_alexnet: Path) -> None:
    """Random backbone weights: checks loading and metric mechanics, NOT real LPIPS values."""
    metric = LPIPS()
    assert metric.unavailable_reason() is None
    assert ALEXNET_FILE in metric.backend() and "lpips 0.1" in metric.backend()

    # The backbone really is the saved file (not lpips's own random init).
    saved = torch.load(random_alexnet, map_location="cpu", weights_only=True)
    net = metric._network(torch.device("cpu"))
    assert torch.equal(getattr(net.net.slice1, "0").weight, saved["features.0.weight"])
    assert torch.equal(getattr(net.net.slice5, "10").weight, saved["features.10.weight"])

    a, b = _frames(0), _frames(1)
    assert torch.allclose(metric.per_frame(a, a), torch.zeros(3, dtype=torch.float64), atol=1e-7)
    d_ab, d_ba = metric.per_frame(a, b), metric.per_frame(b, a)
    assert (d_ab > 0).all()
    assert torch.allclose(d_ab, d_ba, rtol=1e-5, atol=1e-7)

    # [0,1] inputs are mapped to lpips's [-1,1] convention.
    expected = net(a * 2 - 1, b * 2 - 1).flatten().double()
    assert torch.allclose(d_ab, expected, rtol=1e-5, atol=1e-7)

    # DDP-syncable sum/count state: two updates equal one update on the concatenation.
    c, d = _frames(2, n=2), _frames(3, n=2)
    twice, once = LPIPS(), LPIPS()
    twice.update(a, b)
    twice.update(c, d)
    once.update(torch.cat([a, c]), torch.cat([b, d]))
    r_twice, r_once = twice.result(), once.result()
    assert r_twice.count == r_once.count == 5
    assert r_twice.value == pytest.approx(r_once.value, rel=1e-6)
    assert r_twice.value > 0 and r_twice.reason is None

    same = LPIPS()
    same.update(a, a)
    assert same.result().value == pytest.approx(0.0, abs=1e-7)


def test_built_by_name_for_same_identity_only(isolated: Path) -> None:
    assert list(build_metrics(["lpips"], "same_identity")) == ["lpips"]
    assert list(build_metrics(["lpips"], "cross_identity")) == []


def test_doctor_lists_lpips_with_reason(isolated: Path) -> None:
    from reenact.doctor import metric_rows, weight_rows

    rows = {row["name"]: row for row in metric_rows()}
    assert not rows["lpips"]["available"] and ALEXNET_FILE in rows["lpips"]["where"]
    assert rows["lpips"]["protocols"] == ["same_identity"]
    assert not {row["name"]: row for row in weight_rows()}["lpips-alex"]["available"]


def test_doctor_lists_lpips_available_with_backbone(random_alexnet: Path) -> None:
    from reenact.doctor import metric_rows

    row = {row["name"]: row for row in metric_rows()}["lpips"]
    assert row["available"] and ALEXNET_FILE in row["where"]
