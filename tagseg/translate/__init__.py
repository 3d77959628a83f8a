"""``tagseg translate``: cine store -> tagged-looking store (physics, physics_dynamic, cyclegan).

:class:`~tagseg.translate.base.Translator` does the shared work; each method subclasses it and
implements ``translate_batch``.
"""

from tagseg.translate.base import BatchRows, TranslateReport, Translator

__all__ = ["BatchRows", "TranslateReport", "Translator"]
