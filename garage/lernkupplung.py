"""The Lernrouter's proposal for the Kupplung's base step.

The Lernrouter replaces the road's gear when it knows enough gears: it reads the prompt, and
weighs the predicted success of every allowed gear against its cost at the budget zone's λ.
Everything after the base step is the Kupplung's (the shift step is skipped for a learned
choice: the router already priced how hard the prompt is); exploration still runs before the
constraints.

For a prompt whose answer is a choice, the router also knows kickdown chains (see
``garage.kickdown``): when, on the logged prompts of the same answer kind, the best allowed
chain's utility at the same λ beats every allowed single gear's, the proposal is the chain;
otherwise the router's best gear for this very prompt.
"""

import random

from garage import kickdown
from garage.engine.kupplung import Entscheidung, Lage, Vorschlag, Wunsch, _violations, kuppeln
from garage.engine.types import Strecke
from garage.fahrer import Fahrer
from garage.lernrouter import LernRouter, zone_lambda


def vorschlag(
    strecke: Strecke,
    lage: Lage,
    *,
    prompt: str,
    router: LernRouter | None,
    lam: float | None = None,
) -> Vorschlag | None:
    """The router's best allowed gear for ``prompt``, or None when it has nothing to say."""
    if router is None:
        return None
    lam = zone_lambda(lage.fuel.zone) if lam is None else lam
    allowed = {g.name for g in lage.gears if not _violations(g, strecke, lage)}
    ranked = router.estimates(prompt, lam, allowed)
    if not ranked:
        return None
    best = ranked[0]
    data = {"gear": best.gear, "lambda": lam, "candidates": [e.as_dict() for e in ranked[:3]]}
    kind = kickdown.answer_kind(prompt)
    reference = router.reference_cost_usd
    chain, single = router.schaltplan.choose(kind, lam, reference, allowed)
    if chain is not None:
        rival = (
            ""
            if single is None
            else f" beats the best single gear there, {single.gear} ({single.accuracy:.1%} at "
            f"~{single.cost_usd:.6f} USD, {single.utility(lam, reference):.3f})"
        )
        return Vorschlag(
            gear=chain.cheap[0],
            message=(
                f"Lernrouter ({router.kind}, {router.samples} trips): kickdown "
                f"{chain.describe()} — on {chain.prompts} logged {kickdown.describe_kind(kind)} "
                f"prompts {chain.accuracy:.1%} right at ~{chain.cost_usd:.6f} USD (kicked down "
                f"on {chain.kickdown_rate:.0%}); utility {chain.utility(lam, reference):.3f}"
                f"{rival}; λ {lam:g} ({lage.fuel.zone} zone)."
            ),
            data={**data, "gear": chain.cheap[0], "kickdown": chain.as_dict()},
            kickdown=chain.gears,
        )
    return Vorschlag(
        gear=best.gear,
        message=(
            f"Lernrouter ({router.kind}, {router.samples} trips): {best.gear} — "
            f"P(success) {best.p_success:.2f}, ~{best.cost_usd:.6f} USD, "
            f"λ {lam:g} ({lage.fuel.zone} zone)."
        ),
        data=data,
    )


def kuppeln_gelernt(
    strecke: Strecke,
    lage: Lage,
    wunsch: Wunsch,
    rng: random.Random,
    *,
    prompt: str,
    router: LernRouter | None,
    lam: float | None = None,
) -> Entscheidung:
    """The Kupplung with the router's proposal as its base (the plain Kupplung when the router
    cannot help: none trained, a gear asked for by name, or no known gear allowed)."""
    proposal = (
        None if wunsch.gear else vorschlag(strecke, lage, prompt=prompt, router=router, lam=lam)
    )
    return kuppeln(strecke, lage, wunsch, rng, vorschlag=proposal)


class LernFahrer(Fahrer):
    """A Fahrer with a given router (evaluations); ``use_saved`` False means none at all."""

    def __init__(
        self,
        *,
        router: LernRouter | None = None,
        use_saved: bool = True,
        lam: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.given_router, self.use_saved, self.lam = router, use_saved, lam

    def router(self) -> LernRouter | None:
        if self.given_router is not None or not self.use_saved:
            return self.given_router
        return super().router()
