"""The sandbox: the code under test runs in a worker process of its own, and the graded tests, which decide every
outcome, stay in the process that reports them.

The tests reach the code under test only through `Sandboxed`, a loading.CodeSource whose modules are imported in
the worker (`python -m src.harness.grade.sandbox`). Every module, class, network and function there is a `Remote`
here: calling it or reading one of its attributes sends a request and waits for the answer. Tensors, numbers,
strings, lists, tuples and dicts cross by value; anything else stays in the worker and comes back as another
Remote. What a test passes in crosses the other way: a torch.Generator by its state (its new state comes back), a
callable (a fake model) as a callback into this process, a Remote as the worker's own object. The worker runs a
call under the caller's grad mode and CPU autocast, so `with torch.no_grad()` and bfloat16 evaluation mean there
what they mean here.

Nothing the worker sends can run code here: its messages are read with torch.load(weights_only=True), which builds
tensors, numbers, strings, lists, tuples and dicts only. The Gradescope autograder starts the worker as an
unprivileged user (KATA_DROP_TO=uid:gid) with imports of the reference blocked (KATA_BLOCKED_IMPORTS), so the
student's code cannot reach the outcomes' pipe, the tests, the bundle or the results
(src/harness/instructor/autograder.py).

A probe that must run where a network lives (its gradients, its size) is a harness function decorated with
`where_it_lives`: given a Remote it runs in the worker, given a local object here.
"""

import builtins
import contextlib
import functools
import importlib
import importlib.abc
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import traceback
import weakref
from dataclasses import dataclass

import torch

from src.harness.grade.linux import PR_SET_PDEATHSIG, prctl
from src.harness.loading import CodeSource, StudentCodeError, describe_exception, student_location
from src.harness.paths import ROOT

DROP_TO = "KATA_DROP_TO"  # uid:gid the worker runs as (the autograder sets it when it runs as root)
BLOCKED_IMPORTS = "KATA_BLOCKED_IMPORTS"  # comma-separated modules the code under test may not import
# The kata's settings the worker sees (the short run's precision, progress bars, the data); no other KATA_ variable,
# such as the autograder's seed for fresh traces, reaches the code under test.
WORKER_SETTINGS = ("KATA_DATA_ROOT", "KATA_PRECISION", "KATA_PROGRESS")
# Dunder attributes a Remote asks the worker for; any other dunder is this proxy's own (copy, pickle, inspect).
REMOTE_DUNDERS = frozenset({"__name__", "__qualname__", "__module__", "__doc__", "__wrapped__"})
_HEADER = struct.Struct(">4sQ")  # b"KATA", then the length of the message
_MAGIC = b"KATA"


class SandboxError(StudentCodeError):
    """The worker that runs the code under test ended or could not be used."""


# ----------------------------------------------------------------------------------------- this process

class Remote:
    """An object of the worker: a module, class, network, function or method of the code under test."""

    __slots__ = ("_sandbox", "_handle", "_generation", "_type", "__weakref__")

    def __init__(self, sandbox: "Sandbox", handle: int, type_name: str):
        object.__setattr__(self, "_sandbox", sandbox)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_generation", sandbox.generation)
        object.__setattr__(self, "_type", type_name)

    def __getattribute__(self, name: str):
        if name in REMOTE_DUNDERS:  # Remote's own class defines __module__ and __doc__: ask the worker instead
            return object.__getattribute__(self, "_sandbox").request("getattr", self, (name,))
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._sandbox.request("getattr", self, (name,))

    def __call__(self, *args, **kwargs):
        return self._sandbox.request("call", self, args, kwargs)

    def __repr__(self) -> str:
        return f"<{self._type} in the sandbox>"


class _Callback:
    """A callable of this process handed to the worker (a fake model): the worker calls back for each use."""

    def __init__(self, key: int):
        self.key = key


@dataclass(frozen=True)
class _GeneratorState:
    key: int
    state: torch.Tensor


class _Sender(pickle.Pickler):
    """Pickles a request; the markers it meets become references the worker resolves (persistent ids)."""

    def persistent_id(self, obj):
        if isinstance(obj, Remote):
            return ("object", obj._handle)
        if isinstance(obj, _Callback):
            return ("callback", obj.key)
        if isinstance(obj, _GeneratorState):
            return ("generator", obj.key, obj.state)
        return None


class Sandbox:
    """The worker process that holds the code under test (the student's, or the reference's), started on first use
    and started again after it ended (a crash, a test that timed out). Objects of a worker that ended are gone."""

    def __init__(self, reference: bool = False, on_start=None):
        self.reference = reference
        self.on_start = on_start  # called with the worker's pid (the autograder kills its process group at the end)
        self.generation = 0
        self._process = None
        self._ready = False  # the worker has said it is ready
        self._proxies: weakref.WeakValueDictionary[int, Remote] = weakref.WeakValueDictionary()
        self._released: list[int] = []

    # ------------------------------------------------------------------------------- the worker's life

    def _start(self) -> None:
        inbox_read, inbox_write = os.pipe()
        outbox_read, outbox_write = os.pipe()
        self._log = tempfile.TemporaryFile()
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("KATA_") or key in WORKER_SETTINGS}
        drop = os.environ.get(DROP_TO, "")
        user = {}
        if drop and os.geteuid() == 0:
            uid, gid = (int(v) for v in drop.split(":"))
            user = {"user": uid, "group": gid, "extra_groups": []}
        command = [sys.executable, "-m", "src.harness.grade.sandbox", str(inbox_read), str(outbox_write),
                   "reference" if self.reference else "student", os.environ.get(BLOCKED_IMPORTS, ""),
                   str(torch.get_num_threads()), str(os.getpid())]
        self._process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=self._log, pass_fds=(inbox_read, outbox_write),
                                         start_new_session=True, **user)
        os.close(inbox_read)
        os.close(outbox_write)
        self._to_worker, self._from_worker = inbox_write, outbox_read
        self.generation += 1
        self._proxies.clear()
        self._released.clear()
        self._ready = False
        if self.on_start is not None:
            self.on_start(self._process.pid)

    def prepare(self) -> None:
        """Start the worker and wait until it has imported what it needs (torch and the harness), so that no
        test's time limit pays for it."""
        if self._process is None:
            self._start()
        if not self._ready:
            try:
                self._await_ready()
            except BaseException:
                self.close()
                raise

    def _await_ready(self) -> None:
        reply = self._receive()
        if reply["reply"] != "ready":
            raise SandboxError("the process running your code did not start as expected")
        self._ready = True

    def close(self) -> None:
        """End the worker and every process it started in its session."""
        if self._process is None:
            return
        for fd in (self._to_worker, self._from_worker):
            os.close(fd)
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._process.wait()
        self._log.close()
        self._process = None

    def module(self, name: str) -> Remote:
        """The module `name` of the code under test (e.g. "model"), imported in the worker."""
        return self.request("import", None, (name,))

    def run_function(self, function, *args, **kwargs):
        """`function` (a module-level harness function) called with `args` in the worker."""
        return self.request("function", None, (f"{function.__module__}:{function.__qualname__}", *args), kwargs)

    # ------------------------------------------------------------------------------------- requests

    def request(self, op: str, target: Remote | None, args: tuple = (), kwargs: dict | None = None):
        """Send one request and serve the worker's callbacks until its answer comes; the answer's Remotes are
        proxies of this sandbox. A failure of the code under test is raised here as the same built-in exception
        (StudentCodeError for one of the harness's), with `student_description` saying where it was raised."""
        callbacks, generators = {}, {}
        target = self._markers(target, callbacks, generators)
        if self._process is None:
            self._start()
        message = ("request", self._released[:], op, target, self._markers(args, callbacks, generators),
                   self._markers(kwargs or {}, callbacks, generators), _mode())
        self._released.clear()
        try:
            try:
                self._send(message)
            except BrokenPipeError:
                raise SandboxError(self._ended()) from None
            if not self._ready:
                self._await_ready()
            while True:
                reply = self._receive()
                if reply.get("output"):
                    sys.stdout.write(reply["output"])
                if reply["reply"] != "callback":
                    break
                self._send(self._answer_callback(callbacks, reply))
        except KeyboardInterrupt:
            self.close()
            raise
        except BaseException:  # a timeout or a broken worker: the conversation is lost. The next test gets a
            self.close()      # fresh worker, started now, in the time of this test, which has failed already
            with contextlib.suppress(Exception):  # a worker that cannot start: the next test says why
                self.prepare()
            raise
        for key, state in reply.get("generators", {}).items():
            if key in generators and isinstance(state, torch.Tensor):
                generators[key].set_state(state)
        if reply["reply"] == "raise":
            raise _exception(reply)
        return self._proxied(reply.get("value"))

    def _answer_callback(self, callbacks: dict, reply: dict) -> tuple:
        function = callbacks.get(reply.get("key"))
        if function is None:
            return ("raise", "RuntimeError", "the grader's callback is no longer available")
        try:
            return ("return", function(*self._proxied(reply.get("args", [])), **self._proxied(reply.get("kwargs", {}))))
        except Exception as err:
            return ("raise", type(err).__name__, str(err))

    def _markers(self, value, callbacks: dict, generators: dict):
        """`value` with each Generator, callable and Remote of it (in lists, tuples and dicts) marked for the worker."""
        if isinstance(value, Remote):
            if value._generation != self.generation:
                raise SandboxError("this object belonged to an earlier run of your code that ended (after a crash or "
                                   "a timeout in an earlier test); it is gone")
            return value
        if isinstance(value, torch.Generator):
            key = id(value)
            generators[key] = value
            return _GeneratorState(key, value.get_state())
        if isinstance(value, (list, tuple)):
            marked = [self._markers(item, callbacks, generators) for item in value]
            return marked if isinstance(value, list) else tuple(marked)
        if isinstance(value, dict):
            return {key: self._markers(item, callbacks, generators) for key, item in value.items()}
        if callable(value) and not isinstance(value, type):
            callbacks[id(value)] = value
            return _Callback(id(value))
        return value

    def _proxied(self, value):
        """A reply's value with each reference to a worker object turned into its (one) Remote."""
        if isinstance(value, dict):
            if "__remote__" in value:
                handle = int(value["__remote__"])
                proxy = self._proxies.get(handle)
                if proxy is None:
                    proxy = Remote(self, handle, str(value.get("type", "object")))
                    self._proxies[handle] = proxy
                    weakref.finalize(proxy, self._release, self.generation, handle)
                return proxy
            return {key: self._proxied(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._proxied(item) for item in value]
        if isinstance(value, tuple) and not isinstance(value, torch.Size):
            return tuple(self._proxied(item) for item in value)
        return value

    def _release(self, generation: int, handle: int) -> None:
        if generation == self.generation:
            self._released.append(handle)

    def _send(self, message) -> None:
        buffer = io.BytesIO()
        _Sender(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
        _write_frame(self._to_worker, buffer.getvalue())

    def _receive(self) -> dict:
        try:
            body = _read_frame(self._from_worker)
        except ValueError:
            raise SandboxError("your code wrote into the channel that carries its results back to the grader") \
                from None
        if body is None:
            raise SandboxError(self._ended())
        try:
            reply = torch.load(io.BytesIO(body), weights_only=True)
        except Exception as err:
            raise SandboxError(f"your code sent back something the grader cannot read ({err})") from None
        if not isinstance(reply, dict) or reply.get("reply") not in ("ready", "return", "raise", "callback"):
            raise SandboxError("your code sent back something the grader cannot read")
        return reply

    def _ended(self) -> str:
        try:
            status = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # it closed its end of the pipe but lives on
            status = -signal.SIGKILL
        self._log.seek(0)
        tail = self._log.read().decode(errors="replace").strip().splitlines()[-3:]
        how = f"exit status {status}" if status >= 0 else f"signal {-status}"
        return (f"the process running your code ended ({how}): did your code call os._exit, exhaust the memory, or "
                f"crash?" + (f" Its last words: {' / '.join(tail)}" if tail else ""))


def _mode() -> dict:
    """The grad mode and CPU autocast a call runs under."""
    autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return {"grad": torch.is_grad_enabled(), "autocast": autocast}


def _exception(reply: dict) -> BaseException:
    """The exception the worker reported, as a built-in exception (or a StudentCodeError) raised here."""
    name, message = str(reply.get("type")), str(reply.get("message", ""))
    if name in ("StudentCodeError", "NoReferenceError", "SandboxError"):
        err = StudentCodeError(message)
    elif name == "SystemExit":
        err = SystemExit(reply.get("code"))
    else:
        err = _builtin_exception(name, message)
    err.student_description = str(reply.get("description", "")) if reply.get("in_student_code") else ""
    err.remote_traceback = str(reply.get("traceback", ""))  # shown by pytest --tb=long
    return err


@dataclass(frozen=True, eq=False)
class Sandboxed(CodeSource):
    """A CodeSource whose modules are imported, and whose code runs, in a Sandbox's worker."""

    sandbox: Sandbox | None = None

    def module(self, name: str) -> Remote:
        return self.sandbox.module(name)


def where_it_lives(function):
    """Decorate a harness probe `function(obj, ...)` to run in the process that holds `obj`: the sandbox's worker
    when obj is a Remote, this process otherwise."""

    @functools.wraps(function)
    def run(obj, *args, **kwargs):
        if isinstance(obj, Remote):
            return obj._sandbox.run_function(run, obj, *args, **kwargs)
        return function(obj, *args, **kwargs)

    return run


def _write_frame(fd: int, body: bytes) -> None:
    view = memoryview(_HEADER.pack(_MAGIC, len(body)) + body)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> bytes | None:
    """The next message on `fd`; None at its end. ValueError if what comes is no message (something else wrote
    into the pipe)."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    magic, size = _HEADER.unpack(header)
    if magic != _MAGIC:
        raise ValueError("not a message of the sandbox")
    return _read_exactly(fd, size)


# ------------------------------------------------------------------------------------------- the worker

class _Blocked(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = tuple(names)

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ImportError(f"the autograder does not allow importing {fullname} in your code")
        return None


class _Receiver(pickle.Unpickler):
    def __init__(self, body: bytes, worker: "_Worker"):
        super().__init__(io.BytesIO(body))
        self.worker, self.generators = worker, {}

    def persistent_load(self, pid):
        kind = pid[0]
        if kind == "object":
            return self.worker.objects[pid[1]]
        if kind == "callback":
            return functools.partial(self.worker.call_back, pid[1])
        generator = torch.Generator()
        generator.set_state(pid[2])
        self.generators[pid[1]] = generator
        return generator


class _Worker:
    """Serves the requests of the grading process: imports, attribute reads and calls on the code under test."""

    def __init__(self, inbox: int, outbox: int, source: CodeSource):
        self.inbox, self.outbox, self.source = inbox, outbox, source
        self.objects: dict[int, object] = {}
        self.handles: dict[int, int] = {}  # id(object) -> handle
        self.last_handle = 0
        self.output = io.StringIO()

    def serve(self) -> None:
        while True:
            message = self.receive()
            if message is None:
                return
            self.answer(*message)

    def receive(self):
        body = _read_frame(self.inbox)
        if body is None:
            return None
        receiver = _Receiver(body, self)
        return receiver.load(), receiver.generators

    def answer(self, message: tuple, generators: dict) -> None:
        _, released, op, target, args, kwargs, mode = message
        for handle in released:
            self.handles.pop(id(self.objects.pop(handle, None)), None)
        try:
            with torch.set_grad_enabled(mode["grad"]), (
                    torch.autocast("cpu", dtype=mode["autocast"]) if mode["autocast"] else contextlib.nullcontext()):
                value = self.perform(op, target, args, kwargs)
            reply = {"reply": "return", "value": self.data(value)}
        except BaseException as err:  # noqa: B036  (sys.exit in the code under test is a result too)
            reply = _error_reply(err)
        reply["generators"] = {key: generator.get_state() for key, generator in generators.items()}
        self.send(reply)

    def perform(self, op: str, target, args: tuple, kwargs: dict):
        if op == "import":
            return self.source.module(args[0])
        if op == "getattr":
            return getattr(target, args[0])
        if op == "call":
            return target(*args, **kwargs)
        if op == "function":
            module, _, qualname = args[0].partition(":")
            if not module.startswith("src.harness."):
                raise StudentCodeError(f"{module} is not a harness module")
            return functools.reduce(getattr, qualname.split("."), importlib.import_module(module))(*args[1:], **kwargs)
        raise ValueError(f"unknown request {op}")

    def call_back(self, key: int, *args, **kwargs):
        """Call the grading process's callable `key` (a fake model) and wait for its value."""
        self.send({"reply": "callback", "key": key, "args": self.data(list(args)), "kwargs": self.data(kwargs)})
        while True:
            message = self.receive()
            if message is None:
                raise SystemExit(0)
            kind, *rest = message[0]
            if kind == "return":
                return rest[0]
            if kind == "raise":
                raise _builtin_exception(*rest)
            self.answer(*message)  # a request made while the callback ran

    def data(self, value):
        """`value` as what torch.load(weights_only=True) reads: tensors, numbers, strings, lists, tuples and dicts,
        with every other object kept here and sent as a reference."""
        if isinstance(value, torch.Tensor):
            plain = value.detach().as_subclass(torch.Tensor)
            if plain.untyped_storage().nbytes() > plain.numel() * plain.element_size():
                plain = plain.clone()  # a view: send its elements, not its whole storage
            return plain.requires_grad_(value.requires_grad) if value.requires_grad else plain
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes, torch.dtype, torch.device)):
            return value
        if isinstance(value, dict):
            return {key: self.data(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            items = [self.data(item) for item in value]
            return items if isinstance(value, list) else tuple(items)
        if type(value).__name__ in ("generator", "map", "filter"):
            return [self.data(item) for item in value]
        handle = self.handles.get(id(value))
        if handle is None:
            self.last_handle = handle = self.last_handle + 1
            self.objects[handle], self.handles[id(value)] = value, handle
        return {"__remote__": handle, "type": type(value).__name__}

    def send(self, reply: dict) -> None:
        reply["output"] = self.output.getvalue()
        self.output.seek(0)
        self.output.truncate()
        buffer = io.BytesIO()
        try:
            torch.save(reply, buffer)
        except Exception as err:
            buffer = io.BytesIO()
            torch.save(_error_reply(TypeError(f"your code returned something that cannot be sent back: {err}")),
                       buffer)
        _write_frame(self.outbox, buffer.getvalue())


def _error_reply(err: BaseException) -> dict:
    return {"reply": "raise", "type": type(err).__name__, "message": str(err), "description": describe_exception(err),
            "in_student_code": student_location(err) is not None,
            "code": err.code if isinstance(err, SystemExit) and isinstance(err.code, (int, str)) else None,
            "traceback": "".join(traceback.format_exception(err))[-4000:]}


def _builtin_exception(name: str, message: str) -> Exception:
    """The built-in exception called `name`, with `message`; a RuntimeError naming it for any other."""
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # one that takes other arguments
            pass
    return RuntimeError(f"{name}: {message}")


def _die_with(parent: int) -> None:
    """End this worker when the grading process ends, however it ends: a worker stuck in the code under test must
    not outlive a grading that was killed."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)


def main(argv: list[str]) -> None:
    inbox, outbox, source, blocked, threads, parent = argv
    _die_with(int(parent))
    if blocked:
        sys.meta_path.insert(0, _Blocked(blocked.split(",")))
    torch.set_num_threads(int(threads))
    worker = _Worker(int(inbox), int(outbox), CodeSource(reference=source == "reference"))
    sys.stdout = sys.stderr = worker.output  # print() in the code under test reaches the test's output
    worker.send({"reply": "ready"})
    worker.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
