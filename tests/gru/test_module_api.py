"""GRUModule's constructor, keys, modes, conversions, primer and error messages."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.modules import GRUModule as TorchRLGRUModule
from torchrl.modules import set_recurrent_mode as torchrl_set_recurrent_mode

from workbench import GRUModule, PythonGRU, recurrent_mode, set_recurrent_mode


def step_td(batch, features=3, layers=1, hidden=4, is_init=False, with_hidden=True):
    data = {
        "obs": torch.randn(*batch, features),
        "is_init": torch.full((*batch, 1), is_init, dtype=torch.bool),
    }
    if with_hidden:
        data["h"] = torch.randn(*batch, layers, hidden)
    return TensorDict(data, batch)


def make(**kwargs):
    kwargs.setdefault("in_keys", ["obs", "h"])
    kwargs.setdefault("out_keys", ["y", ("next", "h")])
    return GRUModule(3, 4, **kwargs)


class TestKeys:
    def test_in_key_appends_defaults(self):
        """in_key/out_key get the default hidden keys; 'is_init' is appended."""
        module = GRUModule(3, 4, in_key="obs", out_key="y")
        assert module.in_keys == ["obs", "recurrent_state", "is_init"]
        assert module.out_keys == ["y", ("next", "recurrent_state")]

    def test_explicit_is_init_accepted(self):
        module = GRUModule(3, 4, in_keys=["obs", "h", "is_init"], out_keys=["y", ("next", "h")])
        assert module.in_keys == ["obs", "h", "is_init"]

    @pytest.mark.parametrize(
        "kwargs",
        [
            dict(in_key="obs", in_keys=["obs", "h"], out_key="y"),
            dict(out_key="y"),
            dict(in_key="obs", out_key="y", out_keys=["y", ("next", "h")]),
            dict(in_key="obs"),
        ],
    )
    def test_key_arguments_exclusive(self, kwargs):
        with pytest.raises(ValueError, match="exactly one of"):
            GRUModule(3, 4, **kwargs)

    def test_is_init_as_hidden_key_rejected(self):
        """torchrl accepts in_keys=[x, 'is_init'] and crashes later; we refuse it up front."""
        with pytest.raises(ValueError, match=r"in_keys.*'is_init'"):
            GRUModule(3, 4, in_keys=["obs", "is_init"], out_keys=["y", ("next", "h")])

    def test_wrong_number_of_keys(self):
        with pytest.raises(ValueError, match="in_keys"):
            GRUModule(3, 4, in_keys=["obs", "h", "c"], out_keys=["y", ("next", "h")])
        with pytest.raises(ValueError, match="out_keys"):
            GRUModule(3, 4, in_keys=["obs", "h"], out_keys=["y", ("next", "h"), ("next", "c")])

    def test_error_text_does_not_mention_two_hidden_states(self):
        """torchrl's GRU errors speak of 'two hidden states' (copied from the LSTM); a GRU has one."""
        for kwargs in (
            dict(in_keys=["obs"], out_keys=["y", ("next", "h")]),
            dict(in_keys=["obs", "h"], out_keys=["y"]),
        ):
            with pytest.raises(ValueError) as info:
                GRUModule(3, 4, **kwargs)
            assert "two hidden" not in str(info.value)

    def test_extra_keys_are_outputs(self):
        module = make(python_based=True, hidden_trace_key="trace", gates_key="gates")
        assert module.out_keys[2:] == ["trace", "gates"]


class TestConstructor:
    def test_signature_defaults_match_spec(self):
        import inspect

        params = inspect.signature(GRUModule).parameters
        assert list(params)[:6] == ["input_size", "hidden_size", "num_layers", "bias", "dropout", "python_based"]
        assert params["num_layers"].default == 1 and params["dropout"].default == 0
        assert params["bias"].default is True and params["python_based"].default is False
        assert params["recurrent_backend"].kind is inspect.Parameter.KEYWORD_ONLY

    def test_layer_has_nn_gru_parameter_names_in_both_backends(self):
        native = make(num_layers=2)
        python = make(num_layers=2, python_based=True)
        assert isinstance(native.gru, nn.GRU) and isinstance(python.gru, PythonGRU)
        assert list(native.gru.state_dict()) == list(python.gru.state_dict())
        python.gru.load_state_dict(native.gru.state_dict())

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            (dict(num_layers=2), "num_layers=2"),
            (dict(dropout=0.5), "dropout=0.5"),
            (dict(bias=False), "bias=False"),
            (dict(python_based=True), "python_based=True"),
            (dict(dtype=torch.float64), "dtype"),
            (dict(device="meta"), "device"),
            (dict(input_size=7), "input_size=7"),
        ],
    )
    def test_gru_argument_conflicts_raise(self, kwargs, match):
        """torchrl silently ignores layer arguments that conflict with gru=...; we name them."""
        layer = nn.GRU(3, 4, batch_first=True)
        with pytest.raises(ValueError, match=match):
            GRUModule(gru=layer, in_key="obs", out_key="y", **kwargs)

    def test_gru_with_consistent_placement_is_wrapped(self):
        layer = nn.GRU(3, 4, num_layers=2, batch_first=True)
        module = GRUModule(gru=layer, device="cpu", dtype=torch.float32, in_key="obs", out_key="y")
        assert module.gru is layer
        python = PythonGRU(3, 4)
        assert GRUModule(gru=python, python_based=True, in_key="obs", out_key="y").gru is python

    @pytest.mark.parametrize(
        "kwargs",
        [dict(input_size=3), dict(hidden_size=4), dict(num_layers=2), dict(dropout=0.0), dict(input_size=3, hidden_size=4)],
        ids=lambda kw: ",".join(kw),
    )
    def test_gru_is_exclusive_with_layer_arguments_even_when_they_agree(self, kwargs):
        """The spec: gru is 'Exclusive with other nn.GRU arguments' (torchrl raises for the sizes too)."""
        layer = nn.GRU(3, 4, num_layers=2, batch_first=True)
        with pytest.raises(ValueError, match="exclusive") as info:
            GRUModule(gru=layer, in_key="obs", out_key="y", **kwargs)
        for name in kwargs:
            assert f"{name}=" in str(info.value)

    def test_gru_must_be_batch_first(self):
        with pytest.raises(ValueError, match="batch_first"):
            GRUModule(gru=nn.GRU(3, 4), in_key="obs", out_key="y")

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            (dict(recurrent_backend="triton"), "recurrent_backend"),
            (dict(recurrent_backend="fastest"), "recurrent_backend"),
            (dict(bidirectional=True), "bidirectional"),
            (dict(batch_first=False), "batch_first"),
        ],
    )
    def test_invalid_options(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            make(**kwargs)

    @pytest.mark.parametrize("kwargs", [dict(num_layers=0), dict(dropout=1.5), dict(dropout=True)])
    def test_invalid_layer_arguments(self, kwargs):
        name = next(iter(kwargs))
        with pytest.raises(ValueError, match=name):
            make(**kwargs)

    def test_missing_sizes(self):
        with pytest.raises(ValueError, match="input_size"):
            GRUModule(in_key="obs", out_key="y")

    def test_torchrl_backend_names_are_aliases(self):
        assert make(recurrent_backend="pad").recurrent_backend == "native"
        assert make(recurrent_backend="scan").recurrent_backend == "loop"

    def test_gates_need_python_cell(self):
        with pytest.raises(ValueError, match="gates_key"):
            make(gates_key="gates")
        module = make(python_based=True, gates_key="gates")
        with pytest.raises(ValueError, match="gates"):
            module.make_cudnn_based()


class TestSingleStep:
    @pytest.mark.parametrize("batch", [[], [5], [2, 3], [0], [0, 4]])
    @pytest.mark.parametrize("python_based", [False, True])
    def test_shapes(self, batch, python_based):
        """Any batch shape works, including an empty batch (torchrl crashes on that)."""
        module = make(num_layers=2, python_based=python_based, hidden_trace_key="trace")
        td = module(step_td(batch, layers=2))
        assert td["y"].shape == (*batch, 4)
        assert td["next", "h"].shape == (*batch, 2, 4)
        torch.testing.assert_close(td["trace"], td["next", "h"])

    def test_torchrl_crashes_on_empty_batch(self):
        """Documents the torchrl shortfall the test above guards against."""
        ref = TorchRLGRUModule(3, 4, in_keys=["obs", "h"], out_keys=["y", ("next", "h")])
        with pytest.raises(Exception):
            ref(step_td([0]))

    def test_missing_hidden_means_zeros(self):
        module = make()
        td = step_td([3], with_hidden=False)
        explicit = td.clone().set("h", torch.zeros(3, 1, 4))
        torch.testing.assert_close(module(td)["y"], module(explicit)["y"])

    def test_is_init_zeroes_incoming_hidden(self):
        module = make()
        td = step_td([4])
        td["is_init"][:2] = True
        zeroed = td.clone()
        zeroed["h"][:2] = 0
        zeroed["is_init"][:] = False
        torch.testing.assert_close(module(td)["next", "h"], module(zeroed)["next", "h"])
        assert not torch.allclose(module(td)["next", "h"][2:], module(td.clone().set("h", torch.zeros(4, 1, 4)))["next", "h"][2:])

    def test_gates_recorded_and_consistent(self):
        module = make(python_based=True, gates_key="gates")
        td = module(step_td([6]))
        r, z, n = td["gates"].unbind(-2)
        assert ((r > 0) & (r < 1)).all() and ((z > 0) & (z < 1)).all() and (n.abs() < 1).all()
        h = td["h"][:, 0]
        torch.testing.assert_close(td["next", "h"][:, 0], (1 - z[:, 0]) * n[:, 0] + z[:, 0] * h)


class TestInputErrors:
    def test_missing_input_key(self):
        td = step_td([2]).exclude("obs")
        with pytest.raises(KeyError, match=r"'obs'.*missing"):
            make()(td)

    def test_wrong_feature_size(self):
        td = step_td([2], features=5)
        with pytest.raises(ValueError, match=r"'obs'.*\[2, 3\].*\[2, 5\]"):
            make()(td)

    def test_wrong_hidden_shape(self):
        td = step_td([2], layers=2)
        with pytest.raises(ValueError, match=r"'h'.*\[2, 1, 4\].*\[2, 2, 4\]"):
            make()(td)

    def test_missing_is_init_names_init_tracker(self):
        td = step_td([2]).exclude("is_init")
        with pytest.raises(KeyError, match="InitTracker"):
            make()(td)

    def test_zero_dim_tensordict_in_recurrent_mode(self):
        with set_recurrent_mode(True), pytest.raises(ValueError, match=r"batch_size=\[\]"):
            make()(step_td([]))

    def test_dtype_mismatch(self):
        td = step_td([2]).double()
        td["is_init"] = td["is_init"].bool()
        with pytest.raises(TypeError, match="float64"):
            make()(td)


class TestModes:
    def test_default_is_single_step(self):
        assert make().recurrent_mode is False
        assert make(default_recurrent_mode=True).recurrent_mode is True

    def test_context_managers_drive_the_module(self):
        module = make()
        with set_recurrent_mode(True):
            assert module.recurrent_mode
            with torchrl_set_recurrent_mode(False):
                assert not module.recurrent_mode
                with set_recurrent_mode("recurrent"):
                    assert module.recurrent_mode
                assert not module.recurrent_mode
        assert recurrent_mode() is None
        with torchrl_set_recurrent_mode(True):
            assert module.recurrent_mode
        assert not module.recurrent_mode

    def test_decorator(self):
        module = make()

        @set_recurrent_mode(True)
        def inside():
            return module.recurrent_mode

        assert inside() and inside()
        assert recurrent_mode() is None

    def test_reentering_one_object(self):
        """torchrl 0.14.1 keeps one 'previous mode' per object: entering it twice leaves recurrent mode on."""
        cm = set_recurrent_mode(True)
        with set_recurrent_mode(False):
            with cm:
                with cm:
                    pass
                assert recurrent_mode() is True
            assert recurrent_mode() is False
        assert recurrent_mode() is None

    def test_torchrl_reentry_leaks(self):
        """Documents the torchrl behaviour we fix (if torchrl fixes it, this test tells us)."""
        cm = torchrl_set_recurrent_mode(True)
        try:
            with torchrl_set_recurrent_mode(False):
                with cm:
                    with cm:
                        pass
                leaked = recurrent_mode()
        finally:
            torchrl_set_recurrent_mode(None).__enter__()
        assert leaked is True

    def test_one_object_in_two_threads(self):
        cm = set_recurrent_mode(True)
        barrier = threading.Barrier(2)
        seen = {}

        def worker(name, outer):
            with set_recurrent_mode(outer):
                barrier.wait()
                with cm:
                    barrier.wait()
                barrier.wait()
                seen[name] = recurrent_mode()

        threads = [threading.Thread(target=worker, args=(n, o)) for n, o in (("a", False), ("b", None))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == {"a": False, "b": None}

    def test_mode_is_read_only(self):
        with pytest.raises(RuntimeError, match="set_recurrent_mode"):
            make().recurrent_mode = True

    def test_bad_mode(self):
        with pytest.raises(ValueError, match="mode"):
            set_recurrent_mode("sideways")

    def test_deprecated_method_returns_copy_sharing_gru(self):
        module = make()
        with pytest.warns(DeprecationWarning, match="set_recurrent_mode"):
            training = module.set_recurrent_mode(True)
        assert training is not module and training.gru is module.gru
        assert training.recurrent_mode and not module.recurrent_mode
        module.make_python_based()
        assert isinstance(module.gru, PythonGRU) and isinstance(training.gru, nn.GRU)
        with pytest.warns(DeprecationWarning):
            assert module.set_recurrent_mode(False) is module


class TestConversion:
    @pytest.mark.parametrize("training", [True, False])
    def test_round_trip_keeps_parameters_and_flag(self, training):
        """torchrl's conversion loses eval(); ours keeps it, and the very same Parameter objects."""
        module = make(num_layers=2, dropout=0.1).train(training)
        params = dict(module.gru.named_parameters())
        td = step_td([3], layers=2)
        expected = module.eval()(td.clone())["y"] if not training else None
        module.train(training)
        module.make_python_based()
        assert isinstance(module.gru, PythonGRU)
        assert module.gru.training is training
        assert all(p is params[n] for n, p in module.gru.named_parameters())
        if expected is not None:
            torch.testing.assert_close(module(td.clone())["y"], expected)
        module.make_cudnn_based()
        assert isinstance(module.gru, nn.GRU) and module.gru.training is training
        assert all(p is params[n] for n, p in module.gru.named_parameters())
        assert module.gru.dropout == 0.1

    def test_torchrl_conversion_loses_eval(self):
        ref = TorchRLGRUModule(3, 4, in_key="obs", out_key="y").eval()
        ref.make_python_based()
        assert ref.gru.training is True  # the shortfall we fix

    def test_optimizer_keeps_working_after_conversion(self):
        module = make()
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        before = module.gru.weight_hh_l0.detach().clone()
        module.make_python_based()
        module(step_td([2]))["y"].sum().backward()
        opt.step()
        assert not torch.equal(module.gru.weight_hh_l0, before)

    def test_float64_and_to(self):
        module = make(dtype=torch.float64)
        td = step_td([2]).double()
        td["is_init"] = td["is_init"].bool()
        assert module(td)["y"].dtype == torch.float64
        module.make_python_based()
        assert module.gru.weight_ih_l0.dtype == torch.float64
        module.float()
        assert module.make_tensordict_primer().primers["h"].dtype == torch.float32


class TestPrimer:
    def test_shape_dtype_device(self):
        module = make(num_layers=3, dtype=torch.float64)
        spec = module.make_tensordict_primer().primers["h"]
        assert spec.shape == (3, 4) and spec.dtype == torch.float64 and spec.device == torch.device("cpu")

    def test_torchrl_primer_is_always_float32(self):
        ref = TorchRLGRUModule(3, 4, in_keys=["obs", "h"], out_keys=["y", ("next", "h")]).double()
        assert ref.make_tensordict_primer().primers["h"].dtype == torch.float32

    def test_mismatched_keys(self):
        module = GRUModule(3, 4, in_keys=["obs", "h"], out_keys=["y", ("next", "other")])
        with pytest.raises(RuntimeError, match=r"\('next', <input hidden key>\)"):
            module.make_tensordict_primer()


class TestRecurrentEdges:
    @pytest.mark.parametrize("python_based", [False, True])
    def test_empty_sequence_batch(self, python_based):
        module = make(python_based=python_based)
        td = TensorDict({"obs": torch.randn(0, 5, 3), "is_init": torch.zeros(0, 5, 1, dtype=torch.bool)}, [0, 5])
        with set_recurrent_mode(True):
            out = module(td)
        assert out["y"].shape == (0, 5, 4) and out["next", "h"].shape == (0, 5, 1, 4)

    def test_backend_reported(self):
        td = TensorDict({"obs": torch.randn(2, 5, 3), "is_init": torch.zeros(2, 5, 1, dtype=torch.bool)}, [2, 5])
        cases = (
            (dict(), "fused"),  # auto on CPU
            (dict(recurrent_backend="native"), "native"),
            (dict(recurrent_backend="packed"), "packed"),
            (dict(recurrent_backend="fused"), "fused"),
            (dict(recurrent_backend="loop"), "loop"),
            (dict(python_based=True), "fused"),  # the Python layer's own fused loop
            (dict(python_based=True, recurrent_backend="loop"), "loop"),
        )
        for kwargs, expected in cases:
            module = make(**kwargs)
            with set_recurrent_mode(True):
                module(td.clone())
            assert module.last_backend == expected
            assert module.last_backend in GRUModule.BACKENDS and expected != "auto"

    def test_dropout_only_in_training(self):
        module = make(num_layers=2, dropout=0.5).eval()
        td = TensorDict({"obs": torch.randn(2, 5, 3), "is_init": torch.zeros(2, 5, 1, dtype=torch.bool)}, [2, 5])
        with set_recurrent_mode(True):
            a, b = module(td.clone())["y"], module(td.clone())["y"]
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- clear errors, no leaks (issue 11)
class TestClearErrors:
    def _td(self, **fields):
        batch = fields.pop("batch", [2])
        fields.setdefault("is_init", torch.zeros(*batch, 1, dtype=torch.bool))
        return TensorDict(fields, batch)

    @pytest.mark.parametrize("recurrent", [False, True])
    def test_hidden_of_the_wrong_dtype_is_named(self, recurrent):
        module = GRUModule(3, 4, in_key="x", out_key="y")
        batch = [2, 5] if recurrent else [2]
        td = self._td(x=torch.randn(*batch, 3), recurrent_state=torch.zeros(*batch, 1, 4, dtype=torch.float64),
                      batch=batch)
        with set_recurrent_mode(recurrent), pytest.raises(TypeError) as info:
            module(td)
        message = str(info.value)
        assert "'recurrent_state'" in message and "torch.float64" in message and "torch.float32" in message
        assert "mat1 and mat2" not in message

    @pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
    def test_integer_input_does_not_suggest_an_integer_module(self, dtype):
        module = GRUModule(3, 4, in_key="x", out_key="y")
        with pytest.raises(TypeError) as info:
            module(self._td(x=torch.ones(2, 3, dtype=dtype)))
        message = str(info.value)
        assert "floating-point" in message and f"module.to({dtype})" not in message
        assert "to(torch.float32)" in message

    @pytest.mark.parametrize("arg", [torch.randn(2, 3), None, {"x": torch.randn(2, 3)}], ids=["tensor", "None", "dict"])
    def test_calling_without_a_tensordict_says_one_is_needed(self, arg):
        module = GRUModule(3, 4, in_key="x", out_key="y")
        with pytest.raises(TypeError, match="expects a TensorDict holding 'x'"):
            module(arg)

    def test_keyword_tensors_still_dispatch(self):
        module = GRUModule(3, 4, in_key="x", out_key="y")
        y, h = module(x=torch.randn(2, 3), is_init=torch.ones(2, 1, dtype=torch.bool))
        assert y.shape == (2, 4) and h.shape == (2, 1, 4)

    @pytest.mark.parametrize("backend", GRUModule.BACKENDS)
    def test_vmap_in_recurrent_mode_runs_the_loop_on_every_backend(self, backend):
        """cuDNN has no vmap rule and the fast kernels are data-dependent: under vmap every backend runs
        the loop (last_backend says so) and gives what the module gives row by row."""
        module = GRUModule(3, 4, num_layers=2, in_key="x", out_key="y", recurrent_backend=backend)
        is_init = torch.zeros(2, 5, 1, dtype=torch.bool)
        is_init[0, 2] = is_init[1, 3] = True
        xs = torch.randn(3, 2, 5, 3)
        with set_recurrent_mode(True):
            ys = torch.vmap(lambda x: module(TensorDict({"x": x, "is_init": is_init}, [2, 5]))["y"])(xs)
            assert module.last_backend == "loop"
            for x, y in zip(xs, ys):
                torch.testing.assert_close(y, module(TensorDict({"x": x, "is_init": is_init}, [2, 5]))["y"])

    @pytest.mark.parametrize("backend", GRUModule.BACKENDS)
    @pytest.mark.parametrize("python_based", [False, True])
    def test_recurrent_mode_on_meta_gives_shapes(self, backend, python_based):
        module = GRUModule(3, 4, num_layers=2, in_key="x", out_key="y", recurrent_backend=backend,
                           python_based=python_based, device="meta")
        td = TensorDict({"x": torch.randn(2, 5, 3), "is_init": torch.rand(2, 5, 1) < 0.3}, [2, 5]).to("meta")
        with set_recurrent_mode(True):
            out = module(td)
        assert out["y"].shape == (2, 5, 4) and out["y"].is_meta
        assert out["next", "recurrent_state"].shape == (2, 5, 2, 4)
        assert module.last_backend == "loop"


def test_set_recurrent_mode_leaves_no_context_entry_per_instance():
    """10,000 instances entered add no entries to the thread's context (one shared variable)."""
    import contextvars

    with set_recurrent_mode(True):
        pass
    before = len(contextvars.copy_context())
    for _ in range(10_000):
        with set_recurrent_mode(True):
            with set_recurrent_mode(False):
                pass
    assert len(contextvars.copy_context()) == before
    assert recurrent_mode() is None
