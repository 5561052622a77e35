"""Stacked runs: train a pack of runs in one pass, parameters on a leading run axis, identical numbers.

Runs whose configs differ only in the seed and in scalar hyperparameters of the optimizer, the
schedule and the loss (not the model's shape, the batch size, the data set's shapes, the number
of epochs or the dtype) can train together::

    from lossbench.stack import stack_key, train_stack
    key = stack_key(built)              # hashable, or None: this run trains alone
    results = train_stack(builts, on_epochs=[...], checkpoints=[...], config_hashes=[...])
    packs(jobs_overrides, stack_size=16, n_workers=2)   # the sweeper's packing, from overrides alone

Parameters of R runs live in arrays (R, ...); every step gathers each run's own mini-batch (its
own shuffling generator, its own split of the data: the split depends on the seed) into one
(R, b, d) buffer, runs the model's ``forward_stacked`` / ``backward_stacked`` (``np.matmul`` over
the stack), calls the loss once on the stacked rows (once per distinct loss setting), and steps a
:class:`lossbench.optim.StackedOptimizer` with each run's learning rate as an (R, 1) array. Each
run keeps its own schedule, divergence test, collapse flag, sparse evaluation, ``on_epoch``
callback and checkpoint (its own files; a pack killed midway resumes each run from its own last
epoch). A run that diverges leaves the stack; the others go on.

Identical numbers: each run's records (every column but ``time_s``), :class:`TrainResult` and
final parameters equal the run trained alone by :func:`lossbench.train.train`, bit for bit, with
one BLAS thread (``tests/test_stack.py`` checks every built-in component). Why it holds: a
stacked ``np.matmul`` calls, per run, the BLAS routine ``np.dot`` calls on one matrix (gemm, or
gemv/dot when a side is a vector); losses are row-wise (each sample's loss and gradient depend on
its own row only), so a call on the rows of several runs gives each row what it gets alone;
reductions run along the last, contiguous axis per run, as alone; the optimizers' rules are
elementwise and their few scalar formulas are evaluated per run in Python floats. With several
BLAS threads both paths may split sums differently and differ at round-off (as two thread counts
already do alone).

What was measured to break identity, and how it is handled: nothing in float64 (stacked matmul,
gemv, dot and the no-BLAS outer product of batch size 1, the per-run reductions, the ECE bin
sums all agree bit for bit with one BLAS thread, and also with two at these sizes); in float32 two
things did, both fixed: a Python float meeting a float32 array is rounded to float32 first (NEP 50)
while a float64 (R, 1) column is not, so the stacked optimizer casts its columns to the
parameters' dtype (``lossbench.optim._as``); and the gradient norm's per-parameter dot products
must be summed in float64, as alone's ``float(np.vdot(g, g))``. A hyperparameter all runs of a
pack share stays a Python float. A user schedule returning NumPy scalars with a float32 model
would round differently alone and stacked (built-in schedules return Python floats).

What stacks: components whose class declares ``stackable = True``: every built-in model
(``forward_stacked``/``backward_stacked``), loss (row-wise) and optimizer
(``stack_hyperparameters``, ``stack_structure``); any schedule (it is called per run, once an
epoch). A user's model, loss or optimizer without the flag makes :func:`stack_key` return None:
that run trains alone, as before. ``lossbench.testing.check_stacked`` checks the contract for a
component that declares it. Runs whose splits differ in size get different keys (they never share
a pass); arrays that are not C-contiguous give None (another memory layout is another BLAS call).

Costs: the pack keeps one copy of each distinct training split (runs of one seed share it; ten
seeds of a 40 MB split hold 400 MB more). ``time_s`` of a stacked run is its pack's training clock,
the time the run waited; ``TrainResult.stack_size`` says how many runs shared it.
"""

from lossbench.stack.key import stack_key
from lossbench.stack.engine import train_stack
from lossbench.stack.packing import DEFAULT_STACK_SIZE, pack_key, packs

__all__ = ["DEFAULT_STACK_SIZE", "pack_key", "packs", "stack_key", "train_stack"]
