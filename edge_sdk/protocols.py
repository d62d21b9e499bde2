"""The three plugin interfaces, Protocols: a plugin need not inherit anything; and `OpenedSource`.

Built-in plugins also inherit `Closing`, which only adds the context-manager methods. `OpenedSource`
is what `open_source` hands out for any source (`edge_sdk.sources.ManagedSource` fills gaps).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from edge_sdk.types import Frame, Prediction, TensorSpec

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are not evaluated at run time
    from typing import Self


class Closing:
    """Mixin: ``with obj:`` calls ``obj.close()`` on the way out."""

    def close(self) -> None:  # pragma: no cover - overridden
        """Release what the object holds; calling it twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@runtime_checkable
class Runtime(Protocol):
    """Moves one tensor through a model; knows nothing about images or labels.

    `run` takes an array matching `input_spec` (batch of 1) and returns the first output as an
    array matching `output_spec`, a new one each call (the caller may keep or change it: the
    Classifier works on a float32 output in place). It is called from one thread at a time.
    """

    model_format: str
    input_spec: TensorSpec
    output_spec: TensorSpec

    def run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class FrameSource(Protocol):
    """Produces frames. `read` blocks until a frame is ready and returns None at the end."""

    uri: str

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class OpenedSource(FrameSource, Protocol):
    """What `edge_sdk.sources.open_source` returns, whatever the backend.

    A FrameSource that also reports `size` ((width, height); (0, 0) until known), `fps` (0.0 if
    unknown) and `live`, and that ``with`` closes.
    """

    @property
    def size(self) -> tuple[int, int]: ...

    @property
    def fps(self) -> float: ...

    @property
    def live(self) -> bool: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Consumes predictions. `publish` gets each prediction with the frame it came from.

    `frame` may be None when the pipeline did not keep the image. A sink must not block for long:
    the pipeline calls it from the sink's own worker thread, but a slow sink still loses frames.
    """

    def publish(self, prediction: Prediction, frame: Frame | None) -> None: ...

    def close(self) -> None: ...


FloatArray = npt.NDArray[np.float32]
