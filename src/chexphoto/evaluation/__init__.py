"""Scoring without a model: AUROC with patient-bootstrap CIs (:mod:`.metrics`), paired comparison
of conditions (:mod:`.compare`), the robustness table (:mod:`.robustness`) and the HTML report
(:mod:`.report`). Nothing here imports torch."""
