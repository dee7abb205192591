import pytest
import torch

from basins.landscapes.losses import margins, sample_losses


def test_binary_losses_by_hand():
    output = torch.tensor([[[2.0], [-0.5]]])
    y = torch.tensor([1.0, 1.0])
    torch.testing.assert_close(margins(output, y), torch.tensor([[2.0, -0.5]]))
    torch.testing.assert_close(sample_losses(output, y, loss="mse"), torch.tensor([[0.5, 1.125]]))
    torch.testing.assert_close(sample_losses(output, y, loss="hinge"), torch.tensor([[0.0, 1.5]]))
    torch.testing.assert_close(sample_losses(output, y, loss="quadratic_hinge"), torch.tensor([[0.0, 1.125]]))
    expected = torch.log1p(torch.exp(-torch.tensor([[2.0, -0.5]])))
    torch.testing.assert_close(sample_losses(output, y, loss="cross_entropy"), expected)


def test_multiclass_margin_and_cross_entropy_match_torch():
    output = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 1, 1, 2])
    expected = torch.stack([torch.nn.functional.cross_entropy(o, y, reduction="none") for o in output])
    torch.testing.assert_close(sample_losses(output, y, loss="cross_entropy"), expected)
    true = output[:, torch.arange(5), y]
    others = output.clone()
    others[:, torch.arange(5), y] = -float("inf")
    torch.testing.assert_close(margins(output, y), true - others.amax(-1))


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="loss='l1'"):
        sample_losses(torch.zeros(1, 1, 1), torch.ones(1), loss="l1")


def test_inverse_temperature_of_cross_entropy():
    output = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1, 2])
    expected = torch.stack([torch.nn.functional.cross_entropy(3.0 * o, y, reduction="none") for o in output]) / 3.0
    torch.testing.assert_close(sample_losses(output, y, loss="cross_entropy", beta=3.0), expected)
    # binary: softplus(-beta m) / beta tends to the perceptron loss relu(-m) as beta grows
    binary, labels = output[..., :1], torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    perceptron = torch.relu(-margins(binary, labels))
    hot = sample_losses(binary, labels, loss="cross_entropy", beta=1e4)
    torch.testing.assert_close(hot, perceptron, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="beta=0"):
        sample_losses(binary, labels, loss="cross_entropy", beta=0)
