"""helpseek_core: the pure algorithms of HelpSeek (numpy/scipy only, no I/O but the artifact).

Where each piece lives (one module per job):

=====================  ==============================================================
``types``              records: StepLog, TabularModel, BudgetedSolution, LagrangianSolution
``errors``             the exception tree (drawn in its docstring)
``model``              Phase II: estimate T(s'|s,a) from a StepLog (sparse; n_min + PRM leaves)
``exact``              exact models from known dynamics + exact policy evaluation
``budgeted``           the exact budgeted DP over (t, s, c): every c <= Cmax in one pass
``lagrangian``         the paper's penalty-r solver and reward/usage search
``typed``              several intervention types: the exact DP over (t, s, c_1..c_m)
``typed_helper``       the typed helper: which help (if any) from every type's budget
``labels``             optimal-action labels for logged (t, s) from either solver
``occupancy``          forward occupancy of a budgeted policy: its intervention rate
``prm``                PRM inference: tabular Monte-Carlo and numpy MLP
``mlp``                the numpy MLP every shipped network runs on
``helper``             helper inference (numpy MLP), input encoding, novelty, decide()
``baselines``          the registry of baseline policies and their calibration
``metrics``            success CI, PGR, APGR, CPT, oracle ratio, violations, ECE/Brier/AUROC
``artifact``           the versioned, checksummed artifact directory (the only I/O)
=====================  ==============================================================
"""

from helpseek_core.artifact import Artifact, load_artifact, write_artifact
from helpseek_core.budgeted import solve_budgeted
from helpseek_core.errors import HelpSeekError
from helpseek_core.helper import Decision, Helper
from helpseek_core.lagrangian import search_penalty, solve_penalty
from helpseek_core.model import estimate_model
from helpseek_core.types import BudgetedSolution, LagrangianSolution, StepLog, TabularModel

__all__ = [
    "Artifact",
    "BudgetedSolution",
    "Decision",
    "HelpSeekError",
    "Helper",
    "LagrangianSolution",
    "StepLog",
    "TabularModel",
    "estimate_model",
    "load_artifact",
    "search_penalty",
    "solve_budgeted",
    "solve_penalty",
    "write_artifact",
]
