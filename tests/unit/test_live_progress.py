"""A batch's live status write is best effort: whatever stops it, every row of the batch is left for write-back."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from phone_sync.contracts import Batch, Batches, BatchRow
from phone_sync.crypto import Sealer, new_key
from phone_sync.outcomes import Outcome, Status
from phone_sync.pipeline.progress import batch_progress
from phone_sync.sheets.placement import StatusCell
from phone_sync.sheets.quota import SheetsQuota
from tests.regions import region_file


def test_a_live_write_that_cannot_run_leaves_every_row_for_write_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(self: SheetsQuota, requests: int) -> bool:
        raise ConnectionError("the Variables store did not answer")

    monkeypatch.setattr(SheetsQuota, "try_take", unreachable)
    config = region_file(tmp_path / "regions")
    rows = [  # row 3's identifier is on another row of the run too: write-back places it anyway
        BatchRow(
            row=row,
            identifier=f"33020{row:011d}",
            phone="+6281234567890",
            effective=date(2026, 11, 20),
            repeated=row == 3,
        )
        for row in range(2, 6)
    ]
    statuses = [Status(row=r.row, identifier=r.identifier, outcome=Outcome.UPDATED, batch=0) for r in rows]
    cells = [StatusCell(row=r.row, identifier=r.identifier, text="success: phone updated") for r in rows]
    batch = Batch(index=0, label="rows 2-5", rows=rows)
    (group,) = Batches.by_key([batch], identifier_column=1, columns={"identifier": 1, "status": 5}).values()
    context = {"ti": SimpleNamespace(try_number=1), "run_id": "manual__2026-11-20"}

    progress = batch_progress(
        config,
        context,  # type: ignore[arg-type]
        group,
        batch,
        statuses,
        cells,
        Sealer.from_text(new_key()),
        preview=False,
    )

    assert sorted(progress.left) == [2, 3, 4, 5], "write-back must write every status the live write did not"
    assert progress.written == []
    assert progress.reason == "progress write failed (ConnectionError)"
