//! The filters marketers need beyond minijinja's own: dates in the
//! contact's timezone and the project's locale, money, truncation.

use chrono::{DateTime, NaiveDate, TimeZone as _};
use chrono_tz::Tz;
use minijinja::{Environment, Error, ErrorKind, State, Value};

pub fn register(env: &mut Environment<'static>, default_timezone: Tz, locale: String) {
    let chinese = locale.to_ascii_lowercase().starts_with("zh");
    env.add_filter(
        "date",
        move |state: &State, value: Value, format: Option<String>| {
            date(state, &value, format.as_deref(), default_timezone, chinese)
        },
    );
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("money", money);
    env.add_filter("truncate", truncate);
}

/// The contact's own timezone when it has a valid one.
fn timezone(state: &State, default: Tz) -> Tz {
    state
        .lookup("contact")
        .and_then(|contact| contact.get_attr("timezone").ok())
        .and_then(|zone| zone.as_str().and_then(|name| name.parse().ok()))
        .unwrap_or(default)
}

fn date(
    state: &State,
    value: &Value,
    format: Option<&str>,
    default_timezone: Tz,
    chinese: bool,
) -> Result<String, Error> {
    let text = value.as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "`date` needs a date or a date and time, got {}",
                value.kind()
            ),
        )
    })?;
    let (date_format, date_time_format) = if chinese {
        ("%Y年%-m月%-d日", "%Y年%-m月%-d日 %H:%M")
    } else {
        ("%B %-d, %Y", "%B %-d, %Y %H:%M")
    };
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        let local = timezone(state, default_timezone).from_utc_datetime(&moment.naive_utc());
        return formatted(local.format(format.unwrap_or(date_time_format)), format);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return formatted(day.format(format.unwrap_or(date_format)), format);
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("`date` cannot read `{text}`: expected 2026-09-25 or an RFC 3339 time"),
    ))
}

/// Writes a date with a format the template gave; chrono reports a format
/// it cannot read (`%Q`, a lone `%`) as a formatting error, which becomes
/// the template's error instead of a crash.
fn formatted(date: impl std::fmt::Display, format: Option<&str>) -> Result<String, Error> {
    use std::fmt::Write as _;
    let mut text = String::new();
    write!(text, "{date}").map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "`date` cannot use the format `{}`: use strftime codes such as `%Y-%m-%d %H:%M`",
                format.unwrap_or_default()
            ),
        )
    })?;
    Ok(text)
}

/// Unlike Jinja's own, an empty field counts as missing: a contact whose
/// `company` is empty (`null` or `""`) must not read "Dear None".
// minijinja filters return `Result`-free values too; this one cannot fail.
fn default(value: Value, fallback: Option<Value>) -> Value {
    let missing = value.is_undefined()
        || value.is_none()
        || value.as_str().is_some_and(|text| text.trim().is_empty());
    if missing {
        fallback.unwrap_or_else(|| Value::from(""))
    } else {
        value
    }
}

/// `{{ 1280 | money("CNY") }}` → `¥1,280.00`.
fn money(value: Value, currency: Option<String>) -> Result<String, Error> {
    let amount = f64::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`money` needs a number, got {}", value.kind()),
        )
    })?;
    let currency = currency
        .unwrap_or_else(|| "CNY".to_string())
        .to_ascii_uppercase();
    let (symbol, decimals) = match currency.as_str() {
        "CNY" | "RMB" => ("¥", 2),
        "JPY" => ("¥", 0),
        "USD" => ("$", 2),
        "EUR" => ("€", 2),
        "GBP" => ("£", 2),
        "HKD" => ("HK$", 2),
        other => return Ok(format!("{other} {}", grouped(amount, 2))),
    };
    Ok(format!(
        "{}{symbol}{}",
        if amount < 0.0 { "-" } else { "" },
        grouped(amount.abs(), decimals)
    ))
}

/// `1234567.5` → `1,234,567.50`.
fn grouped(amount: f64, decimals: usize) -> String {
    let fixed = format!("{:.*}", decimals, amount.abs());
    let (whole, fraction) = fixed
        .split_once('.')
        .map_or((fixed.as_str(), None), |(whole, fraction)| {
            (whole, Some(fraction))
        });
    let mut out = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    if amount < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// Cuts text to `length` characters, ending with `…` when it cut.
// minijinja filters return `Result`; this one cannot fail.
#[allow(clippy::unnecessary_wraps)]
fn truncate(value: Value, length: Option<usize>, end: Option<String>) -> Result<String, Error> {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), ToString::to_string);
    let length = length.unwrap_or(255);
    if text.chars().count() <= length {
        return Ok(text);
    }
    let end = end.unwrap_or_else(|| "…".to_string());
    let keep = length.saturating_sub(end.chars().count());
    Ok(text.chars().take(keep).collect::<String>() + &end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, context: &serde_json::Value, locale: &str) -> String {
        let mut env = Environment::new();
        register(&mut env, chrono_tz::Asia::Shanghai, locale.to_string());
        env.render_str(source, minijinja::value::Serde(context))
            .unwrap_or_else(|error| panic!("{error:#}"))
    }

    #[test]
    fn dates_follow_the_contact_timezone_and_locale() {
        let context = serde_json::json!({"contact": {"timezone": "America/New_York"}, "at": "2026-11-23T03:30:00Z", "day": "2026-09-25"});
        assert_eq!(
            render("{{ at | date }}", &context, "zh-CN"),
            "2026年11月22日 22:30"
        );
        assert_eq!(
            render("{{ day | date }}", &context, "en-US"),
            "September 25, 2026"
        );
        assert_eq!(
            render("{{ day | date(\"%m月%d日\") }}", &context, "zh-CN"),
            "09月25日"
        );
        let no_zone = serde_json::json!({"contact": {}, "at": "2026-11-23T03:30:00Z"});
        assert_eq!(
            render("{{ at | date }}", &no_zone, "zh-CN"),
            "2026年11月23日 11:30"
        );
    }

    #[test]
    fn default_covers_empty_fields() {
        let context =
            serde_json::json!({"contact": {"company": null, "blank": " ", "name": "张三"}});
        assert_eq!(
            render("{{ contact.company | default(\"贵单位\") }}", &context, ""),
            "贵单位"
        );
        assert_eq!(
            render("{{ contact.blank | default(\"x\") }}", &context, ""),
            "x"
        );
        assert_eq!(
            render("{{ contact.missing | d(\"y\") }}", &context, ""),
            "y"
        );
        assert_eq!(
            render("{{ contact.name | default(\"x\") }}", &context, ""),
            "张三"
        );
    }

    #[test]
    fn money_and_truncate() {
        let context = serde_json::json!({"a": 1_234_567.5, "b": 1280, "c": -5, "t": "新品发布会邀请函正式发出"});
        assert_eq!(render("{{ a | money }}", &context, ""), "¥1,234,567.50");
        assert_eq!(
            render("{{ b | money(\"USD\") }}", &context, ""),
            "$1,280.00"
        );
        assert_eq!(render("{{ c | money(\"EUR\") }}", &context, ""), "-€5.00");
        assert_eq!(render("{{ t | truncate(6) }}", &context, ""), "新品发布会…");
        assert_eq!(
            render("{{ t | truncate(20) }}", &context, ""),
            "新品发布会邀请函正式发出"
        );
    }
}
