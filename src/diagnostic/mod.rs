//! The project's own diagnostic type: what `journeyc check` reports. It is
//! kept structured until it is rendered (see `render.rs`).

use crate::span::Span;

pub mod render;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $severity:ident, $summary:literal;)*) => {
        /// Every check has a stable code; the codes are documented in
        /// GRAMMAR.md and never reused for a different meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            pub fn severity(self) -> Severity {
                match self {
                    $(Code::$variant => Severity::$severity,)*
                }
            }

            /// One line describing the check, for documentation.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $summary,)*
                }
            }
        }
    };
}

codes! {
    Syntax = "E100", Error, "syntax error";
    Settings = "E101", Error, "invalid journeyc.yaml";
    DuplicateDefinition = "E102", Error, "journey, segment or score defined twice";
    DuplicateClause = "E103", Error, "a journey clause that may appear once appears twice";
    MissingEntry = "E104", Error, "journey without an entry trigger";
    EmptyJourney = "E105", Error, "journey without steps";
    TooDeep = "E106", Error, "nesting too deep";
    TooLarge = "E107", Error, "journey, expression, template or file beyond journeyc's limits";
    OutsideProject = "E108", Error, "symlink that leaves the project, loops or leads nowhere";
    Unreadable = "E109", Error, "file that is not UTF-8 text";
    UnknownLabel = "E110", Error, "goto or rescue to a label that does not exist";
    DuplicateLabel = "E111", Error, "step label used twice in one journey";
    Cycle = "E112", Error, "steps that loop back on themselves";
    Unreachable = "W113", Warning, "step no contact can reach";
    FallThrough = "W114", Warning, "split without `else`: contacts matching no branch skip it";
    ShadowedBranch = "W115", Warning, "branch that an earlier branch always takes first";
    AbWeights = "E116", Error, "A/B weights that do not add up to 100%";
    HandoffCycle = "E117", Error, "journeys that hand contacts off to each other in a loop";
    RepeatCount = "E118", Error, "repeat count out of range";
    LabelOutOfScope = "E119", Error, "jump into a repeat from outside it";
    UnknownField = "E120", Error, "unknown contact field";
    UnknownEvent = "E121", Error, "event not in the event catalog";
    UnknownStage = "E122", Error, "stage not in the stage list";
    UnknownSegment = "E123", Error, "unknown segment";
    UnknownScore = "E124", Error, "unknown scoring model";
    UnknownJourney = "E125", Error, "hand-off to a journey that does not exist";
    UnknownHoliday = "E126", Error, "holiday not in the holiday calendar";
    UnknownFunction = "E127", Error, "unknown function or wrong number of arguments";
    UnknownProperty = "E128", Error, "event property not in the event catalog";
    UnknownChannel = "E129", Error, "message on a channel journeyc.yaml does not configure";
    TypeMismatch = "E130", Error, "type error in an expression";
    InvalidValue = "E131", Error, "value out of range or not allowed";
    ZeroDuration = "E132", Error, "duration of zero";
    BeyondGoalWindow = "W133", Warning, "duration longer than the goal's conversion window";
    CapAlwaysDefers = "W134", Warning, "send the frequency cap will always defer";
    SegmentCycle = "E135", Error, "segments that refer to each other in a loop";
    UnknownTag = "E136", Error, "tag not in the tag list (when journeyc.yaml has one)";
    IdenticalSteps = "E137", Error, "two identical steps in one block, neither labelled";
    MissingTemplate = "E200", Error, "message whose template file does not exist";
    TemplateSyntax = "E201", Error, "template that does not parse (at the template's own line and column)";
    UnknownVariable = "E202", Error, "template variable not in the schema or the event catalog";
    OptionalWithoutFallback = "E203", Error, "optional field used without `default` or an `if`";
    MissingUnsubscribe = "E204", Error, "marketing email without `unsubscribe_url`";
    MissingSubject = "E205", Error, "email without a subject";
    SmsTooLong = "E206", Error, "SMS longer than `segment_limit` parts";
    EmptyHref = "E207", Error, "HTML link with an empty `href`";
}

/// A secondary location that helps explain a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct Related {
    pub span: Span,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub help: Option<String>,
    pub related: Vec<Related>,
}

impl Diagnostic {
    /// A diagnostic with the code's own severity.
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            span,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    #[must_use]
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push(Related {
            span,
            label: label.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// "did you mean `x`?" for a misspelt name, when one is close enough.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let similarity = strsim::normalized_damerau_levenshtein(name, candidate);
        let close = similarity >= 0.7
            || strsim::damerau_levenshtein(name, candidate) <= 2.max(name.len() / 4)
                && name.len() > 2;
        if close && best.is_none_or(|(score, _)| similarity > score) {
            best = Some((similarity, candidate));
        }
    }
    best.map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["lifetime_value", "first_name", "stage"];
        assert_eq!(
            did_you_mean("lifetme_value", names).as_deref(),
            Some("did you mean `lifetime_value`?")
        );
        assert_eq!(did_you_mean("budget", names), None);
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert_eq!(
                code.as_str().starts_with('E'),
                code.severity() == Severity::Error
            );
        }
    }
}
