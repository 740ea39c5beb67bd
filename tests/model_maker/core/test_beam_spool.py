"""Spool files: the driver's items reach the workers in order, in a bounded number of files."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from model_maker.core import beam_spool


def test_spool_round_trips_in_order_in_at_most_item_files(tmp_path):
    items = [(i, f"img{i}.png") for i in range(1024)]
    files = beam_spool.spool(items, str(tmp_path / "spool"))
    assert len(files) == beam_spool.ITEM_FILES  # 16 items per file
    assert [item for path in files for item in beam_spool.read_spooled(path)] == items


def test_large_inputs_keep_files_bounded_by_items_per_file(tmp_path):
    items = list(range(beam_spool.ITEMS_PER_FILE * beam_spool.ITEM_FILES + 1))
    files = beam_spool.spool(items, str(tmp_path / "spool"))
    assert len(files) == beam_spool.ITEM_FILES + 1
    assert max(len(list(beam_spool.read_spooled(f))) for f in files) == beam_spool.ITEMS_PER_FILE


def test_spooled_items_is_the_collection_of_the_items(tmp_path):
    items = [{"id": i} for i in range(70)]
    with beam.Pipeline() as pipeline:
        out = beam_spool.spooled_items(pipeline, items, str(tmp_path / "spool"), "Items")
        assert_that(out | beam.Map(lambda item: item["id"]), equal_to(list(range(70))))
