//! Name resolution and type checking of expressions against the contact
//! schema and the event catalog.

use std::collections::BTreeMap;
use std::fmt;

use crate::ast::{BinaryOp, Expr, ExprKind};
use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::settings::{FieldSpec, FieldType, Settings};
use crate::span::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum Type {
    Bool,
    Number,
    String,
    /// A string from a fixed list (enum fields, `stage`).
    Enum(Vec<String>),
    Date,
    DateTime,
    Duration,
    Time,
    List(Box<Type>),
    /// After an error: accepted everywhere so one mistake gives one message.
    Unknown,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("a condition (true or false)"),
            Type::Number => f.write_str("a number"),
            Type::String | Type::Enum(_) => f.write_str("text"),
            Type::Date => f.write_str("a date"),
            Type::DateTime => f.write_str("a date and time"),
            Type::Duration => f.write_str("a duration"),
            Type::Time => f.write_str("a time of day"),
            Type::List(_) => f.write_str("a list"),
            Type::Unknown => f.write_str("a value"),
        }
    }
}

impl Type {
    pub fn of_field(field_type: &FieldType) -> Type {
        match field_type {
            FieldType::String => Type::String,
            FieldType::Number => Type::Number,
            FieldType::Bool => Type::Bool,
            FieldType::Date => Type::Date,
            FieldType::DateTime => Type::DateTime,
            FieldType::Enum(values) => Type::Enum(values.clone()),
            FieldType::List => Type::List(Box::new(Type::String)),
        }
    }

    fn is_text(&self) -> bool {
        matches!(self, Type::String | Type::Enum(_) | Type::Unknown)
    }

    fn is_date(&self) -> bool {
        matches!(self, Type::Date | Type::DateTime | Type::Unknown)
    }

    /// Whether values of the two types can be compared with `==`.
    fn comparable(&self, other: &Type) -> bool {
        match (self, other) {
            (Type::Unknown, _) | (_, Type::Unknown) => true,
            (left, right) if left.is_text() && right.is_text() => true,
            (left, right) if left.is_date() && right.is_date() => true,
            (Type::List(left), Type::List(right)) => left.comparable(right),
            (left, right) => left == right,
        }
    }
}

/// What names mean where an expression stands.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    /// The event whose properties `event.x` reads (journeys entered on an
    /// event, and the `got` branch of a wait for one).
    pub event: Option<&'a str>,
    /// Inside `where` after an event: bare names are its properties.
    pub filter_event: Option<&'a str>,
    /// Inside a journey's steps, where a contact has an enrolment and
    /// `enrolled_at` means the moment it began.
    pub enrolment: bool,
}

/// The built-in name for the moment a contact entered the journey.
pub const ENROLLED_AT: &str = "enrolled_at";

/// Names the checker resolves besides fields and events.
pub struct Names<'a> {
    pub settings: &'a Settings,
    pub segments: Vec<&'a str>,
    pub scores: Vec<&'a str>,
}

pub struct TypeChecker<'a, 'd> {
    pub names: &'a Names<'a>,
    pub diagnostics: &'d mut Vec<Diagnostic>,
    /// Segments each expression refers to, for the cycle check.
    pub segment_refs: Vec<(String, Span)>,
}

impl TypeChecker<'_, '_> {
    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Checks a condition: it must be true or false.
    pub fn condition(&mut self, expr: &Expr, scope: Scope<'_>) {
        let found = self.check(expr, scope);
        if !matches!(found, Type::Bool | Type::Unknown) {
            self.report(
                Diagnostic::new(
                    Code::TypeMismatch,
                    expr.span,
                    format!("expected a condition, found {found}"),
                )
                .label("not true or false")
                .help("compare it, for example `lifetime_value >= 100000` or `has_tag(\"vip\")`"),
            );
        }
    }

    /// The type of an expression, reporting what is wrong inside it.
    pub fn check(&mut self, expr: &Expr, scope: Scope<'_>) -> Type {
        match &expr.kind {
            ExprKind::Bool(_) => Type::Bool,
            ExprKind::Number(..) => Type::Number,
            ExprKind::String(_) => Type::String,
            ExprKind::Date(_) => Type::Date,
            ExprKind::Time(_) => Type::Time,
            ExprKind::Duration(_) => Type::Duration,
            ExprKind::Group(inner) => self.check(inner, scope),
            ExprKind::List(items) => {
                let mut element = Type::Unknown;
                for item in items {
                    let found = self.check(item, scope);
                    if element == Type::Unknown {
                        element = found;
                    } else if !element.comparable(&found) {
                        self.report(
                            Diagnostic::new(
                                Code::TypeMismatch,
                                item.span,
                                format!("this list mixes {element} and {found}"),
                            )
                            .label(format!("expected {element}")),
                        );
                    }
                }
                Type::List(Box::new(element))
            }
            ExprKind::Path(parts) => self.path(expr, parts, scope),
            ExprKind::Call { function, args } => self.call(expr, function, args, scope),
            ExprKind::Count {
                event,
                filter,
                within,
            } => {
                let known = self.event(&event.node, event.span);
                if let Some(filter) = filter {
                    let filter_scope = Scope {
                        event: scope.event,
                        filter_event: known.then_some(event.node.as_str()),
                        enrolment: scope.enrolment,
                    };
                    if known {
                        self.condition(filter, filter_scope);
                    }
                }
                if let Some(within) = within {
                    if within.node.is_zero() {
                        self.report(zero_duration(within.span));
                    }
                }
                Type::Number
            }
            ExprKind::Not(inner) => {
                self.condition(inner, scope);
                Type::Bool
            }
            ExprKind::Binary { op, left, right } => {
                self.binary(op.node, op.span, left, right, scope)
            }
        }
    }

    /// Whether the event is in the catalog; reports it when it is not.
    pub fn event(&mut self, name: &str, span: Span) -> bool {
        if self.names.settings.events.contains_key(name) {
            return true;
        }
        let help = did_you_mean(name, self.names.settings.events.keys().map(String::as_str))
            .unwrap_or_else(|| format!("add `{name}` under `events:` in journeyc.yaml"));
        self.report(
            Diagnostic::new(Code::UnknownEvent, span, format!("unknown event `{name}`"))
                .label("not in the event catalog")
                .help(help),
        );
        false
    }

    fn path(&mut self, expr: &Expr, parts: &[crate::ast::Name], scope: Scope<'_>) -> Type {
        let names: Vec<&str> = parts.iter().map(|part| part.node.as_str()).collect();
        match names.as_slice() {
            [_] => match scope.filter_event {
                Some(event) => self.property(event, &parts[0], true),
                None => self.field(&parts[0], scope),
            },
            ["contact", _] => self.field(&parts[1], scope),
            ["event", _] => match scope.event.or(scope.filter_event) {
                Some(event) => self.property(event, &parts[1], false),
                None => {
                    self.report(
                        Diagnostic::new(Code::UnknownProperty, parts[0].span, "no event here to read `event.` from")
                            .label("no triggering event")
                            .help("`event.` works in journeys entered `on event`, in `where` after an event, and in the `got` branch of a wait for an event"),
                    );
                    Type::Unknown
                }
            },
            _ => {
                self.report(
                    Diagnostic::new(Code::UnknownField, expr.span, format!("`{}` is not a field", names.join(".")))
                        .label("unknown name")
                        .help("write a contact field (`first_name`), `contact.first_name` or `event.property`"),
                );
                Type::Unknown
            }
        }
    }

    fn field(&mut self, name: &crate::ast::Name, scope: Scope<'_>) -> Type {
        let settings = self.names.settings;
        if name.node == ENROLLED_AT {
            if scope.enrolment {
                return Type::DateTime;
            }
            self.report(
                Diagnostic::new(Code::UnknownField, name.span, "`enrolled_at` exists only inside a journey's steps")
                    .label("no enrolment here")
                    .help("use it in waits and splits, for example `wait until 2d after enrolled_at at 10:00`"),
            );
            return Type::Unknown;
        }
        if let Some(spec) = settings.field(&name.node) {
            return Type::of_field(&spec.field_type);
        }
        if name.node == "tags" {
            self.report(
                Diagnostic::new(
                    Code::UnknownField,
                    name.span,
                    "tags are read with `has_tag`",
                )
                .label("not a field")
                .help("write `has_tag(\"vip\")`"),
            );
            return Type::Unknown;
        }
        let help = did_you_mean(&name.node, settings.field_names())
            .unwrap_or_else(|| format!("add `{}` under `contact:` in journeyc.yaml", name.node));
        self.report(
            Diagnostic::new(
                Code::UnknownField,
                name.span,
                format!("unknown contact field `{}`", name.node),
            )
            .label("not in the contact schema")
            .help(help),
        );
        Type::Unknown
    }

    fn property(&mut self, event: &str, name: &crate::ast::Name, bare: bool) -> Type {
        let properties: BTreeMap<String, FieldSpec> = self
            .names
            .settings
            .event_properties(event)
            .unwrap_or_default();
        if let Some(spec) = properties.get(&name.node) {
            return Type::of_field(&spec.field_type);
        }
        let help = if bare && self.names.settings.field(&name.node).is_some() {
            format!(
                "`{0}` is a contact field; inside `where` write `contact.{0}`",
                name.node
            )
        } else {
            did_you_mean(&name.node, properties.keys().map(String::as_str)).unwrap_or_else(|| {
                format!(
                    "add `{}` to the properties of `{event}` in journeyc.yaml",
                    name.node
                )
            })
        };
        self.report(
            Diagnostic::new(
                Code::UnknownProperty,
                name.span,
                format!("event `{event}` has no property `{}`", name.node),
            )
            .label("not a property of the event")
            .help(help),
        );
        Type::Unknown
    }

    fn call(
        &mut self,
        expr: &Expr,
        function: &crate::ast::Name,
        args: &[Expr],
        scope: Scope<'_>,
    ) -> Type {
        const FUNCTIONS: [&str; 6] = [
            "has_tag",
            "is_set",
            "days_since",
            "days_until",
            "score",
            "segment",
        ];
        let arity_error = |checker: &mut Self, usage: &str| {
            checker.report(
                Diagnostic::new(
                    Code::UnknownFunction,
                    expr.span,
                    format!("`{}` takes one argument", function.node),
                )
                .label(format!("{} given", args.len()))
                .help(format!("write `{usage}`")),
            );
        };
        match function.node.as_str() {
            "has_tag" => {
                let [tag] = args else {
                    arity_error(self, "has_tag(\"vip\")");
                    return Type::Bool;
                };
                let found = self.check(tag, scope);
                if !found.is_text() {
                    self.mismatch(tag.span, &Type::String, &found);
                }
                if let ExprKind::String(name) = &tag.kind {
                    self.tag(&crate::span::Spanned::new(name.clone(), tag.span));
                }
                Type::Bool
            }
            "is_set" => {
                match args {
                    [field @ Expr {
                        kind: ExprKind::Path(_),
                        ..
                    }] => {
                        self.check(field, scope);
                    }
                    _ => arity_error(self, "is_set(birthday)"),
                }
                Type::Bool
            }
            "days_since" | "days_until" => {
                let [field] = args else {
                    arity_error(self, &format!("{}(birthday)", function.node));
                    return Type::Number;
                };
                let found = self.check(field, scope);
                if !found.is_date() {
                    self.mismatch(field.span, &Type::Date, &found);
                }
                Type::Number
            }
            "score" | "segment" => {
                let (usage, known, code, kind) = if function.node == "score" {
                    (
                        "score(lead)",
                        &self.names.scores,
                        Code::UnknownScore,
                        "scoring model",
                    )
                } else {
                    (
                        "segment(high_value)",
                        &self.names.segments,
                        Code::UnknownSegment,
                        "segment",
                    )
                };
                let name = match args {
                    [Expr {
                        kind: ExprKind::Path(parts),
                        ..
                    }] if parts.len() == 1 => &parts[0],
                    _ => {
                        arity_error(self, usage);
                        return if function.node == "score" {
                            Type::Number
                        } else {
                            Type::Bool
                        };
                    }
                };
                if !known.contains(&name.node.as_str()) {
                    let help =
                        did_you_mean(&name.node, known.iter().copied()).unwrap_or_else(|| {
                            format!(
                                "declare it with `{} {} ...` in a .journey file",
                                function.node, name.node
                            )
                        });
                    self.report(
                        Diagnostic::new(code, name.span, format!("unknown {kind} `{}`", name.node))
                            .label(format!("no such {kind}"))
                            .help(help),
                    );
                } else if function.node == "segment" {
                    self.segment_refs.push((name.node.clone(), name.span));
                }
                if function.node == "score" {
                    Type::Number
                } else {
                    Type::Bool
                }
            }
            other => {
                let help = did_you_mean(other, FUNCTIONS)
                    .unwrap_or_else(|| format!("the functions are {}", FUNCTIONS.join(", ")));
                self.report(
                    Diagnostic::new(
                        Code::UnknownFunction,
                        function.span,
                        format!("unknown function `{other}`"),
                    )
                    .label("no such function")
                    .help(help),
                );
                for arg in args {
                    self.check(arg, scope);
                }
                Type::Unknown
            }
        }
    }

    /// A tag must be in the settings' `tags:` list, when there is one.
    pub fn tag(&mut self, tag: &crate::span::Spanned<String>) {
        let Some(tags) = &self.names.settings.tags else {
            return;
        };
        if tags.contains(&tag.node) {
            return;
        }
        let help = did_you_mean(&tag.node, tags.iter().map(String::as_str))
            .unwrap_or_else(|| format!("add `{}` to `tags:` in journeyc.yaml", tag.node));
        self.report(
            Diagnostic::new(
                Code::UnknownTag,
                tag.span,
                format!("unknown tag `{}`", tag.node),
            )
            .label("not in the tag list")
            .help(help),
        );
    }

    fn mismatch(&mut self, span: Span, expected: &Type, found: &Type) {
        if *found == Type::Unknown {
            return;
        }
        self.report(
            Diagnostic::new(
                Code::TypeMismatch,
                span,
                format!("expected {expected}, found {found}"),
            )
            .label(format!("this is {found}")),
        );
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        op_span: Span,
        left: &Expr,
        right: &Expr,
        scope: Scope<'_>,
    ) -> Type {
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            self.condition(left, scope);
            self.condition(right, scope);
            return Type::Bool;
        }
        let left_type = self.check(left, scope);
        let right_type = self.check(right, scope);
        if left_type == Type::Unknown || right_type == Type::Unknown {
            return Type::Bool;
        }
        let fail = |checker: &mut Self, help: &str| {
            checker.report(
                Diagnostic::new(
                    Code::TypeMismatch,
                    op_span,
                    format!(
                        "`{}` cannot compare {left_type} with {right_type}",
                        op.as_str()
                    ),
                )
                .label(format!("{left_type} {} {right_type}", op.as_str()))
                .related(left.span, format!("this is {left_type}"))
                .help(help),
            );
        };
        match op {
            BinaryOp::Eq | BinaryOp::Ne => {
                if left_type.comparable(&right_type) {
                    self.enum_value(&left_type, right);
                    self.enum_value(&right_type, left);
                } else {
                    fail(self, "compare values of the same kind");
                }
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let ordered = matches!(
                    (&left_type, &right_type),
                    (Type::Number, Type::Number)
                        | (Type::Duration, Type::Duration)
                        | (Type::Time, Type::Time)
                ) || (left_type.is_date() && right_type.is_date());
                if !ordered {
                    fail(
                        self,
                        "`<`, `<=`, `>`, `>=` compare numbers, dates, times and durations",
                    );
                }
            }
            BinaryOp::In | BinaryOp::NotIn => match &right_type {
                Type::List(element)
                    if element.comparable(&left_type) && !matches!(left_type, Type::List(_)) =>
                {
                    if let ExprKind::List(items) = &right.kind {
                        for item in items {
                            self.enum_value(&left_type, item);
                        }
                    }
                }
                _ => fail(self, "write `field in [\"a\", \"b\"]`"),
            },
            BinaryOp::Contains => {
                let fits = (left_type.is_text() && right_type.is_text())
                    || matches!(&left_type, Type::List(element) if element.comparable(&right_type));
                if !fits {
                    fail(
                        self,
                        "`contains` looks for text in text, or for an item in a list field",
                    );
                }
            }
            BinaryOp::ContainsAny => {
                let fits = matches!(&right_type, Type::List(element) if element.is_text())
                    && (left_type.is_text() || matches!(&left_type, Type::List(_)));
                if !fits {
                    fail(self, "write `text contains any [\"price\", \"价格\"]`");
                }
            }
            BinaryOp::StartsWith | BinaryOp::EndsWith => {
                if !(left_type.is_text() && right_type.is_text()) {
                    fail(self, "`starts_with` and `ends_with` work on text");
                }
            }
            BinaryOp::And | BinaryOp::Or => {}
        }
        Type::Bool
    }

    /// A literal compared with an enum field must be one of its values.
    fn enum_value(&mut self, expected: &Type, literal: &Expr) {
        let (Type::Enum(values), ExprKind::String(value)) = (expected, &literal.kind) else {
            return;
        };
        if values.contains(value) {
            return;
        }
        let is_stage = *values == self.names.settings.stages;
        let (code, what) = if is_stage {
            (Code::UnknownStage, "stage")
        } else {
            (Code::InvalidValue, "value")
        };
        let help = did_you_mean(value, values.iter().map(String::as_str))
            .unwrap_or_else(|| format!("the {what}s are {}", quoted_list(values)));
        self.report(
            Diagnostic::new(code, literal.span, format!("unknown {what} `{value}`"))
                .label(format!("not one of the {what}s"))
                .help(help),
        );
    }
}

pub fn zero_duration(span: Span) -> Diagnostic {
    Diagnostic::new(Code::ZeroDuration, span, "a duration of zero")
        .label("zero")
        .help("use a positive duration such as `1d`, or remove the step")
}

pub fn quoted_list(values: &[String]) -> String {
    values
        .iter()
        .map(|value| format!("`{value}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
