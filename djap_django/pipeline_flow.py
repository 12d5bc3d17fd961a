"""How a finished pipeline step readies its successors: the state transitions.

Every function here runs inside the caller's transaction, after the caller has
locked the pipeline row. Steps of one pipeline therefore finish one at a time,
so the join counter and the "is anything left to run?" check never race, and a
crash can never leave a step done with its successor not yet readied.

Rows and branches: `trigger` writes one row per step, each step's row pointing
at the previous one through `parent_id` (a join row has no parent: it has many).
A fan-out of N items reuses the branch's next row for the first item and writes
N - 1 new branches, each a chain of rows up to the next join (or the end). A join
row's `waiting_for` counts the branches that have not reached it yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone

from . import codec, conf
from .exceptions import InvalidInputsError
from .models import JobDBModel, PipelineDBModel
from .queue import in_transaction
from .queue.base import HALTED, Outcome

Status = JobDBModel.Status

#: The error of a step that will never run because a fan-out before it was empty.
SKIPPED = "skipped: an earlier step fanned out into an empty list"

UNFINISHED = (Status.NOT_READY, Status.NEW, Status.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of `Pipeline.jobs`: the job class, and whether it joins the branches."""

    job: type[Any]
    join: bool = False

    @property
    def name(self) -> str:
        return self.job.__name__


class StepError(Exception):
    """A finished step cannot hand its results on; the step is failed with this message."""


# -- planning: what the next step gets ---------------------------------------------


def plan_next(steps: Sequence[Step], index: int, outcome: Outcome, job_name: str) -> list[Any]:
    """The inputs of the next step, one item per branch ([] ends the branch).

    Raises StepError naming what to fix when the results do not fit the next step.
    """
    if index + 1 >= len(steps):
        if outcome.has_next_inputs:
            raise StepError(
                f"{job_name} is the last step of its pipeline but set next_job_inputs; "
                "there is no step to give them to"
            )
        return []
    nxt = steps[index + 1]
    if nxt.join:
        if outcome.has_next_inputs:
            raise StepError(
                f"{job_name} is followed by the join {nxt.name}, which receives every "
                f"branch's outputs: set self.outputs in {job_name}.run, not next_job_inputs"
            )
        return []
    inputs_cls = nxt.job.Inputs
    if outcome.has_next_inputs:
        value = outcome.next_inputs
        items = list(value) if isinstance(value, list | tuple) else [value]
        if inputs_cls is None:
            raise StepError(
                f"{job_name} set next_job_inputs but the next step {nxt.name} declares no Inputs"
            )
        return [_encode(nxt.name, inputs_cls, item, job_name) for item in items]
    if inputs_cls is None:
        return [None]
    outputs = None if outcome.outputs_json is None else json.loads(outcome.outputs_json)
    if outputs is None:
        raise StepError(
            f"the next step {nxt.name} needs {nxt.name}.Inputs: set self.next_job_inputs "
            f"(or outputs that fit {nxt.name}.Inputs) in {job_name}.run"
        )
    try:
        codec.decode(nxt.name, inputs_cls, outputs)
    except InvalidInputsError as exc:
        raise StepError(
            f"{job_name}'s outputs do not fit the next step ({exc}); set "
            f"self.next_job_inputs to a {nxt.name}.Inputs in {job_name}.run"
        ) from None
    return [outputs]


def _encode(name: str, inputs_cls: type, item: Any, job_name: str) -> Any:
    try:
        _, text = codec.encode(name, inputs_cls, item)
    except InvalidInputsError as exc:
        raise StepError(f"{job_name} set next_job_inputs that do not fit: {exc}") from None
    if codec.has_nul(text):
        raise StepError(
            f"{job_name} set next_job_inputs that hold a NUL character (\\u0000), which "
            "PostgreSQL cannot store in JSON; remove it, e.g. text.replace('\\x00', '')"
        )
    return json.loads(text)


def join_field(job_cls: type[Any]) -> str:
    """The one field of a join's Inputs, which receives the list of outputs."""
    import dataclasses

    return next(f.name for f in dataclasses.fields(job_cls.Inputs) if f.init)


# -- moving on ---------------------------------------------------------------------


def step_of(row: JobDBModel) -> int:
    """The row's step; every row this module is given belongs to a pipeline."""
    if row.pipeline_step is None:
        raise ValueError(f"job {row.pk} is not a step of a pipeline")
    return row.pipeline_step


def _jobs(alias: str, pipeline: PipelineDBModel) -> QuerySet:
    return JobDBModel.objects.using(alias).filter(pipeline_id=pipeline.pk)


def _next_join(steps: Sequence[Step], start: int) -> int | None:
    return next((i for i in range(start, len(steps)) if steps[i].join), None)


#: What finishing a step did to the rest of its pipeline (see advance).
READIED, WAITING, ENDED = "readied", "waiting", "ended"


def advance(
    alias: str, pipeline: PipelineDBModel, steps: Sequence[Step], row: JobDBModel, items: list
) -> str:
    """Ready what follows `row` (just marked done).

    Returns READIED if a row became `new`, WAITING if something still waits (a join
    counting, a halted pipeline), ENDED if this branch ended: only then can the
    pipeline be done, so only then is it worth asking.
    """
    index = step_of(row)
    if index + 1 >= len(steps):
        return ENDED
    jobs = _jobs(alias, pipeline)
    if steps[index + 1].join:
        return _arrive_at_join(alias, pipeline, steps, index + 1)
    live = pipeline.status == PipelineDBModel.Status.RUNNING
    join_at = _next_join(steps, index + 1)
    end = len(steps) if join_at is None else join_at
    branch = jobs.filter(pipeline_step=index + 1, parent_id=row.pk)
    if not items:
        nxt = branch.order_by("id").first()
        if nxt is not None:
            _skip_branch(jobs, nxt, end)
        return ENDED if join_at is None else _arrive_at_join(alias, pipeline, steps, join_at)
    # The branch's own next row takes the first item. A halted row keeps its inputs
    # too, so that resuming the pipeline can start it.
    taken = branch.filter(status=Status.NOT_READY).update(
        inputs=items[0], status=Status.NEW
    ) or branch.filter(status=Status.CANCELLED, error=HALTED).update(inputs=items[0])
    rest = items[1:] if taken else items
    if rest:
        _create_branches(alias, pipeline, steps, row, rest, end, live)
    if join_at is not None and len(items) > 1:
        jobs.filter(pipeline_step=join_at).update(waiting_for=F("waiting_for") + len(items) - 1)
    return READIED if live else WAITING


def _create_branches(
    alias: str,
    pipeline: PipelineDBModel,
    steps: Sequence[Step],
    parent: JobDBModel,
    items: list,
    end: int,
    live: bool,
) -> None:
    """Write one chain of rows per item, from the next step up to `end` (exclusive)."""
    first = step_of(parent) + 1
    parents = [parent.pk] * len(items)
    for index in range(first, end):
        if live:
            status, error = (Status.NEW if index == first else Status.NOT_READY), ""
        else:
            status, error = Status.CANCELLED, HALTED
        rows = [
            step_row(
                steps[index].job,
                pipeline=pipeline,
                pipeline_step=index,
                status=status,
                error=error,
                parent_id=parent_id,
                inputs=items[n] if index == first else None,
            )
            for n, parent_id in enumerate(parents)
        ]
        JobDBModel.objects.using(alias).bulk_create(rows, batch_size=1000)
        parents = [r.pk for r in rows]


def step_row(job_cls: type[Any], **fields: Any) -> JobDBModel:
    """An unsaved row for one step, with the job class's options."""
    return JobDBModel(
        name=job_cls.__name__,
        priority=job_cls.priority,
        max_attempts=job_cls.max_attempts or conf.get("MAX_ATTEMPTS"),
        timeout=job_cls.timeout if job_cls.timeout is not None else conf.get("TIMEOUT"),
        **fields,
    )


def _skip_branch(jobs: QuerySet, first: JobDBModel, end: int) -> None:
    """Mark a branch's rows from `first` up to step `end` as never going to run."""
    ids, level = [first.pk], [first.pk]
    for index in range(step_of(first) + 1, end):
        level = list(
            jobs.filter(pipeline_step=index, parent_id__in=level).values_list("id", flat=True)
        )
        ids += level
    jobs.filter(id__in=ids, status__in=(Status.NOT_READY, Status.CANCELLED)).update(
        status=Status.CANCELLED, error=SKIPPED, finished_at=timezone.now()
    )


def _arrive_at_join(
    alias: str, pipeline: PipelineDBModel, steps: Sequence[Step], join_at: int
) -> str:
    """One branch reached (or will never reach) the join: count it down."""
    jobs = _jobs(alias, pipeline)
    jobs.filter(pipeline_step=join_at).update(waiting_for=F("waiting_for") - 1)
    join = jobs.get(pipeline_step=join_at)
    if join.waiting_for > 0 or join.status != Status.NOT_READY:
        return WAITING
    return READIED if ready_join(alias, pipeline, steps, join) else ENDED


def ready_join(
    alias: str, pipeline: PipelineDBModel, steps: Sequence[Step], join: JobDBModel
) -> bool:
    """Every branch is in: give the join their outputs, in the order the branches began."""
    jobs = _jobs(alias, pipeline)
    at = step_of(join)
    outputs = list(
        jobs.filter(pipeline_step=at - 1, status=Status.DONE)
        .order_by("id")
        .values_list("outputs", flat=True)
    )
    if not outputs:
        # Every branch ended in an empty fan-out: nothing is left to run.
        jobs.filter(pipeline_step__gte=at, status=Status.NOT_READY).update(
            status=Status.CANCELLED, error=SKIPPED, finished_at=timezone.now()
        )
        return False
    join.inputs = {join_field(steps[at].job): outputs}
    join.status = Status.NEW
    join.save(using=alias, update_fields=["inputs", "status"])
    return True


# -- locks


def lock_pipeline_of(alias: str, job_id: int) -> PipelineDBModel | None:
    """Lock the pipeline of a job (if any) before touching the job's row.

    Every writer takes the pipeline row first, then job rows, so two of them never
    wait on each other in a circle.
    """
    jobs = JobDBModel.objects.using(alias).filter(pk=job_id)
    pipeline_id = jobs.values_list("pipeline_id", flat=True).first()
    if pipeline_id is None:
        return None
    return PipelineDBModel.objects.using(alias).select_for_update().get(pk=pipeline_id)


# -- the pipeline's own status -----------------------------------------------------


def halt(alias: str, pipeline: PipelineDBModel, status: str, statuses: Sequence[str]) -> int:
    """Set the pipeline's status and stop its waiting steps; returns how many stopped."""
    halted, pipeline.finished_at = in_transaction(alias).pipeline_halt(
        pipeline.pk, status, statuses
    )
    pipeline.status = status
    return halted


def fail(alias: str, pipeline: PipelineDBModel) -> None:
    """A step failed for good: the pipeline fails and its not_ready steps are halted."""
    if pipeline.status == PipelineDBModel.Status.RUNNING:
        halt(alias, pipeline, PipelineDBModel.Status.FAILED, (Status.NOT_READY,))


def finish_if_idle(alias: str, pipeline: PipelineDBModel) -> None:
    """A running pipeline with nothing left to run or waiting is done."""
    if pipeline.status != PipelineDBModel.Status.RUNNING:
        return
    finished_at = in_transaction(alias).pipeline_finish_if_idle(pipeline.pk)
    if finished_at is not None:
        pipeline.status, pipeline.finished_at = PipelineDBModel.Status.DONE, finished_at


def resume(alias: str, pipeline: PipelineDBModel, steps: Sequence[Step]) -> bool:
    """Bring halted steps back: `new` where their predecessor is done, else `not_ready`.

    Returns True if a row became `new`.
    """
    pipeline.status, pipeline.finished_at = PipelineDBModel.Status.RUNNING, None
    pipeline.save(using=alias, update_fields=["status", "finished_at"])
    jobs = _jobs(alias, pipeline)
    halted = list(jobs.filter(status=Status.CANCELLED, error=HALTED).order_by("id"))
    parents = {r.parent_id for r in halted if r.parent_id is not None}
    done = set(jobs.filter(id__in=parents, status=Status.DONE).values_list("id", flat=True))
    ready, waiting, joins = [], [], []
    for row in halted:
        if row.pipeline_step < len(steps) and steps[row.pipeline_step].join:
            joins.append(row)
        elif row.pipeline_step == 0 or row.parent_id in done:
            ready.append(row.pk)
        else:
            waiting.append(row.pk)
    jobs.filter(id__in=ready).update(status=Status.NEW, error="", finished_at=None)
    jobs.filter(id__in=waiting + [j.pk for j in joins]).update(
        status=Status.NOT_READY, error="", finished_at=None
    )
    woke = bool(ready)
    for join in joins:
        join.status = Status.NOT_READY
        if join.waiting_for == 0:
            woke = ready_join(alias, pipeline, steps, join) or woke
    return woke
