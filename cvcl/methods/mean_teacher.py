"""Mean teacher (Tarvainen and Valpola, 2017): the student's softmax follows an EMA teacher's
on the unlabeled volumes."""

from __future__ import annotations

from cvcl.methods import Batch, Method, Term

MT = Term(
    "loss_mt",
    "softmax MSE between student and teacher on the unlabeled volumes",
    "consistency_terms",
    weight="loss.mt_weight",
)


def add_mean_teacher(batch: Batch) -> None:
    """``mt_weight * w(t) * MSE(softmax(student), softmax(teacher))`` over the unlabeled
    volumes ``(B_u, K, X, Y, Z)``; shared with cvcl, which builds on the mean teacher."""
    from cvcl.losses.consistency import softmax_mse  # torch: the declaration imports without it

    if not batch.uses(MT):
        return
    mt = softmax_mse(batch.logits[batch.n_labeled :], batch.t_logits)
    batch.add(batch.cfg.mt_weight * batch.w * mt, {MT: mt})


class MeanTeacher(Method):
    def add_terms(self, batch: Batch) -> None:
        add_mean_teacher(batch)


METHOD = MeanTeacher(
    name="mean_teacher", description="student follows an EMA teacher on the unlabeled volumes", order=1, terms=(MT,)
)
