"""Behavioural scorers: a batch of (prompt, output) in, per-item values and an aggregate with
a confidence interval out (:class:`ScoreResult`).

Registered by name (``get_scorer("refusal")``, ``list_scorers()``). Model-free scorers live
here: refusal phrases, attack success rate, judges for free text, trait expression. Scorers
that need the model (A/B choice and K-option choice from next-token logits, target log-prob) live
in ``ab.py`` / ``koption.py`` / ``logprob.py`` and register themselves the same way.
"""

from __future__ import annotations

from workbench.scorers.ab import ABFormatError, ABItem, ABScorer, ab_accuracy, ab_scores, load_ab_items
from workbench.scorers.asr import ASRScorer, attack_success_rate
from workbench.scorers.base import (
    Scorer,
    ScoreResult,
    UnknownScorerError,
    get_scorer,
    list_scorers,
    register_scorer,
    resolve_groups,
)
from workbench.scorers.judge import (
    ASR_JUDGE_TEMPLATE,
    BinaryParser,
    Judgement,
    ModelJudge,
    ScoreParser,
    UnscoredItemsWarning,
    batched,
    make_model_judge,
    parse_binary,
    parse_score,
    run_judge,
)
from workbench.scorers.koption import (
    KOptionFormatError,
    KOptionItem,
    KOptionResult,
    KOptionScorer,
    koption_scores,
    plot_koption,
)
from workbench.scorers.logprob import (
    ContinuationScores,
    LogprobScorer,
    continuation_logprobs,
    logit_difference,
    target_logprob,
)
from workbench.scorers.match import MATCH_MODES, AnswerMatchScorer, answer_matches
from workbench.scorers.refusal import (
    REFUSAL_PHRASES,
    RefusalScorer,
    is_refusal,
    match_refusal,
    normalize_text,
)
from workbench.scorers.statements import StatementScores, statement_is_yes_keyed, yes_no_bias
from workbench.scorers.trait import TRAIT_JUDGE_TEMPLATE, TraitScorer, make_trait_judge, trait_expression

__all__ = [
    "ABItem", "ABScorer", "ABFormatError", "ab_scores", "ab_accuracy", "load_ab_items",
    "KOptionItem", "KOptionResult", "KOptionScorer", "KOptionFormatError", "koption_scores", "plot_koption",
    "StatementScores", "yes_no_bias", "statement_is_yes_keyed",
    "AnswerMatchScorer", "answer_matches", "MATCH_MODES",
    "ContinuationScores", "LogprobScorer", "continuation_logprobs", "target_logprob", "logit_difference",
    "ScoreResult",
    "Scorer",
    "register_scorer",
    "get_scorer",
    "list_scorers",
    "UnknownScorerError",
    "resolve_groups",
    "REFUSAL_PHRASES",
    "RefusalScorer",
    "is_refusal",
    "match_refusal",
    "normalize_text",
    "Judgement",
    "BinaryParser",
    "ScoreParser",
    "parse_binary",
    "parse_score",
    "batched",
    "ModelJudge",
    "make_model_judge",
    "run_judge",
    "UnscoredItemsWarning",
    "ASR_JUDGE_TEMPLATE",
    "ASRScorer",
    "attack_success_rate",
    "TRAIT_JUDGE_TEMPLATE",
    "TraitScorer",
    "make_trait_judge",
    "trait_expression",
]
