"""UA-MT (Yu et al., 2019): mean-teacher consistency on the voxels where the teacher is certain."""

from __future__ import annotations

from cvcl.methods import Batch, Method, Term

UAMT = Term("loss_uamt", "softmax MSE on the unlabeled voxels where the teacher's entropy is low", "consistency_terms")


class UncertaintyAwareMeanTeacher(Method):
    def add_terms(self, batch: Batch) -> None:
        """``w(t) * masked MSE``: the teacher's entropy over ``uamt_passes`` noisy passes of the
        unlabeled volumes ``(B_u, 1, X, Y, Z)`` masks the softmax MSE."""
        from cvcl.losses.uncertainty import masked_consistency, teacher_uncertainty, uncertainty_threshold

        cfg, n_labeled = batch.cfg, batch.n_labeled
        # at least 1e-6: every pass draws its input noise, even with teacher_noise = 0
        uncertainty = teacher_uncertainty(
            batch.teacher,
            batch.images[n_labeled:],
            cfg.uamt_passes,
            max(cfg.teacher_noise, 1e-6),
            chunk=min(cfg.uamt_passes, 4),
        )
        threshold = uncertainty_threshold(batch.step, batch.total_iterations, batch.n_classes)
        uamt = masked_consistency(batch.logits[n_labeled:], batch.t_logits, uncertainty, threshold)
        batch.add(batch.w * uamt, {UAMT: uamt})


METHOD = UncertaintyAwareMeanTeacher(
    name="ua_mt", order=2, terms=(UAMT,), description="mean teacher restricted to the teacher's certain voxels"
)
