"""Restricted tags stay inside the gateway: which samples may be published.

Tags classified ``restricted`` never leave the gateway (neither in births nor in data,
MQTT or InfluxDB) unless ``northbound.publish_restricted`` is true.
"""

from __future__ import annotations

import numpy as np

from gateway.tags import TagCatalog
from gateway.types import Classification, SampleBatch


class PublishableTags:
    """Which tags may leave the gateway: all, or all but the restricted ones."""

    def __init__(self, catalog: TagCatalog, publish_restricted: bool) -> None:
        #: per tag id: may it leave the gateway
        self.mask = np.array(
            [publish_restricted or t.classification is not Classification.RESTRICTED
             for t in catalog.slots],
            dtype=bool,
        )  # fmt: skip
        self._all = bool(self.mask.all())

    def select(self, batch: SampleBatch) -> SampleBatch:
        """``batch`` without the samples of tags that must not leave the gateway."""
        if self._all or not len(batch):
            return batch
        keep = self.mask[batch.tag_ids]
        return batch if keep.all() else batch.select(keep)
