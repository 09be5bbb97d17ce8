//! The senders `journeyc deliver` hands messages to: SMTP or .eml files for
//! email, Twilio's API, a JSON webhook or files for SMS, and webhooks for
//! operator tasks and webhook steps. Each attempt ends as an [`Attempt`]:
//! accepted, temporary (retried), or permanent.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{SmtpTransport, Transport as _};
use serde_json::Value as Json;

use crate::model::MessageKey;
use crate::settings::{EmailTransport, Sending, SmsTransport, SmsTransportKind};

/// How one attempt to hand a message over ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Accepted (SMTP 250, HTTP 2xx), with the provider's id if it gave one.
    Accepted { provider_id: Option<String> },
    /// Worth trying again: SMTP 4xx, HTTP 429 and 5xx, timeouts, dropped
    /// connections. `retry_after` is the provider's own wish, if it said.
    Temporary {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Will fail again: SMTP 5xx, HTTP 4xx. `bounce` when the provider said
    /// the address does not exist (the address is then suppressed), or the
    /// reason it gave for an unsubscribed number.
    Permanent {
        error: String,
        bounce: Option<&'static str>,
    },
    /// The provider refused journeyc itself (SMTP 530/534/535/538, HTTP
    /// 401: wrong or missing credentials): no message can go until that
    /// is fixed, so delivery stops and the message stays queued.
    Refused { error: String },
}

impl Attempt {
    pub fn permanent(error: impl Into<String>) -> Attempt {
        Attempt::Permanent {
            error: error.into(),
            bounce: None,
        }
    }
}

/// At most `rate` messages per second across the threads of a channel.
pub struct Pace {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pace {
    pub fn new(sending: &Sending) -> Pace {
        Pace {
            interval: sending
                .rate
                .filter(|rate| *rate > 0.0)
                .map(|rate| Duration::from_secs_f64(1.0 / rate)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this thread's turn.
    pub fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    }
}

/// A file name from a key: its injective file-name encoding, so two
/// messages never write the same file.
pub fn file_name(key: &MessageKey, extension: &str) -> String {
    format!("{}.{extension}", key.file_stem())
}

/// Writes `bytes` to `dir/name` whole or not at all (a temporary file,
/// then a rename): a re-sent message replaces its file.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Attempt {
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, dir.join(name))
    });
    match result {
        Ok(()) => Attempt::Accepted {
            provider_id: Some(dir.join(name).display().to_string()),
        },
        Err(error) => Attempt::Temporary {
            error: format!("cannot write `{}`: {error}", dir.join(name).display()),
            retry_after: None,
        },
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("the environment variable `{name}` is not set"))
}

/// A URL written in the settings or read from the variable they name.
fn url_of(url: Option<&String>, url_env: Option<&String>, what: &str) -> Result<String, String> {
    match (url, url_env) {
        (Some(url), None) => Ok(url.clone()),
        (None, Some(name)) => env(name).map_err(|error| format!("{what}: {error}")),
        (Some(_), Some(_)) => Err(format!("{what}: give `url` or `url_env`, not both")),
        (None, None) => Err(format!("{what}: `url` (or `url_env`) is required")),
    }
}

/// Where email goes.
pub enum EmailSender {
    Smtp(SmtpTransport),
    Files(PathBuf),
}

impl EmailSender {
    pub fn new(transport: &EmailTransport, root: &Path) -> Result<EmailSender, String> {
        let what = "channels.email.transport";
        let url = url_of(transport.url.as_ref(), transport.url_env.as_ref(), what)?;
        if let Some(folder) = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"))
        {
            return Ok(EmailSender::Files(root.join(folder)));
        }
        let shown = redacted(&url);
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err(format!(
                "{what}: `{shown}` is not an smtp://, smtps:// or file: URL"
            ));
        }
        let security = SmtpSecurity::of(&url);
        if security.password_in_url && transport.url.is_some() {
            return Err(format!(
                "{what}: the URL `{shown}` in journeyc.yaml holds a password; keep credentials out of the repository: name environment variables with `username_env` and `password_env` (or give the whole URL in `url_env`)"
            ));
        }
        let lettre_url = security.without_tls_none(&url);
        let mut builder = SmtpTransport::from_url(&lettre_url)
            .map_err(|error| format!("{what}: `{shown}`: {}", redacted(&error.to_string())))?;
        let mut logs_in = security.password_in_url;
        match (&transport.username_env, &transport.password_env) {
            (Some(user), Some(password)) => {
                let read = |name: &str| env(name).map_err(|error| format!("{what}: {error}"));
                builder = builder.credentials(Credentials::new(read(user)?, read(password)?));
                logs_in = true;
            }
            (None, None) => {}
            _ => {
                return Err(format!(
                    "{what}: give both `username_env` and `password_env`, or neither"
                ))
            }
        }
        if logs_in && !security.encrypted && !security.loopback {
            if !security.tls_none {
                return Err(format!(
                    "{what}: `{shown}` would send the password in clear text (SMTP AUTH without TLS); use smtps:// or add ?tls=required, or add ?tls=none to send it unencrypted all the same"
                ));
            }
            tracing::warn!(
                url = %shown,
                "SMTP AUTH without TLS (?tls=none): the password crosses the network in clear text"
            );
            eprintln!("warning: {what}: `{shown}` sends the password in clear text (?tls=none)");
        }
        if let Some(ca_file) = &transport.ca_file {
            builder = builder.tls(company_tls(&url, &root.join(ca_file), what)?);
        }
        let connections = u32::try_from(transport.sending.connections.max(1)).unwrap_or(u32::MAX);
        Ok(EmailSender::Smtp(
            builder
                .timeout(Some(transport.sending.timeout.duration()))
                .pool_config(PoolConfig::new().max_size(connections))
                .build(),
        ))
    }

    pub fn send(&self, message: &lettre::Message, key: &MessageKey) -> Attempt {
        match self {
            EmailSender::Files(dir) => {
                write_file(dir, &file_name(key, "eml"), &message.formatted())
            }
            EmailSender::Smtp(transport) => match transport.send(message) {
                Ok(response) => Attempt::Accepted {
                    provider_id: response.first_line().map(queue_id),
                },
                Err(error) => smtp_failure(&error),
            },
        }
    }
}

/// What an SMTP URL says about the safety of logging in.
struct SmtpSecurity {
    /// `smtps://` or `?tls=required`: AUTH goes only over TLS.
    encrypted: bool,
    /// `?tls=none`: the user accepted no TLS explicitly.
    tls_none: bool,
    /// The host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
    loopback: bool,
    password_in_url: bool,
}

impl SmtpSecurity {
    fn of(url: &str) -> SmtpSecurity {
        let (scheme, rest) = url.split_once("://").unwrap_or(("smtp", url));
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
        let host = if let Some(bracketed) = host_port.strip_prefix('[') {
            bracketed.split(']').next().unwrap_or(bracketed)
        } else {
            host_port.split(':').next().unwrap_or(host_port)
        };
        let query = rest.split_once('?').map_or("", |(_, query)| query);
        let tls = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("tls="))
            .unwrap_or("");
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback());
        SmtpSecurity {
            encrypted: scheme == "smtps" || tls == "required",
            tls_none: tls == "none",
            loopback,
            password_in_url: userinfo.contains(':'),
        }
    }

    /// The URL as lettre takes it: `tls=none` is journeyc's word for
    /// lettre's default (no TLS).
    fn without_tls_none(&self, url: &str) -> String {
        if !self.tls_none {
            return url.to_string();
        }
        let Some((base, query)) = url.split_once('?') else {
            return url.to_string();
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| *pair != "tls=none")
            .collect();
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    }
}

/// A URL (or a text holding URLs) with the password of each
/// `scheme://user:password@host` replaced by `***`, for messages and logs.
pub fn redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c == '/'
                    || c == '?'
                    || c == '#'
                    || c.is_whitespace()
                    || c == '`'
                    || c == '\''
                    || c == '"'
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    out.push_str(user);
                    out.push_str(":***@");
                    out.push_str(host);
                } else {
                    out.push_str(authority);
                }
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// TLS as the URL asks for it (`smtps://` from the start; `?tls=required`
/// or `?tls=opportunistic` by STARTTLS), trusting the CAs of `ca_file` too.
fn company_tls(url: &str, ca_file: &Path, what: &str) -> Result<Tls, String> {
    let pem = std::fs::read(ca_file).map_err(|error| {
        format!(
            "{what}: cannot read `ca_file` `{}`: {error}",
            ca_file.display()
        )
    })?;
    let certificate = Certificate::from_pem(&pem).map_err(|error| {
        format!(
            "{what}: `{}` is not a PEM certificate: {error}",
            ca_file.display()
        )
    })?;
    let (scheme, rest) = url.split_once("://").unwrap_or(("smtp", url));
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or(bracketed)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    let parameters = TlsParameters::builder(host.to_string())
        .add_root_certificate(certificate)
        .build_rustls()
        .map_err(|error| format!("{what}: {error}"))?;
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    Ok(if scheme == "smtps" {
        Tls::Wrapper(parameters)
    } else if query.contains("tls=required") {
        Tls::Required(parameters)
    } else if query.contains("tls=opportunistic") {
        Tls::Opportunistic(parameters)
    } else {
        return Err(format!(
            "{what}: `ca_file` is set but `{}` uses no TLS; use smtps:// or add ?tls=required",
            redacted(url)
        ));
    })
}

/// The server's id for a message: what follows "queued as", else the
/// whole line.
fn queue_id(line: &str) -> String {
    line.split_once("queued as ")
        .map_or(line, |(_, id)| id)
        .trim()
        .to_string()
}

/// SMTP 4xx, timeouts and broken connections are temporary; 5xx is
/// permanent, and 550, 551 and 553 (no such mailbox, not local, bad
/// mailbox name) are hard bounces.
fn smtp_failure(error: &lettre::transport::smtp::Error) -> Attempt {
    let text = redacted(&error.to_string());
    let code = error.status().map(|code| code.to_string());
    if matches!(code.as_deref(), Some("530" | "534" | "535" | "538")) {
        return Attempt::Refused { error: text };
    }
    if error.is_permanent() {
        let bounce = matches!(code.as_deref(), Some("550" | "551" | "553")).then_some("bounced");
        return Attempt::Permanent {
            error: text,
            bounce,
        };
    }
    Attempt::Temporary {
        error: text,
        retry_after: None,
    }
}

/// An HTTP POST's outcome: 2xx accepted, 429 and 5xx temporary (with
/// `Retry-After`), other 4xx permanent.
fn http_outcome(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    id_field: &[&str],
) -> (Attempt, Option<Json>) {
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            return (
                Attempt::Temporary {
                    error: redacted(&format!("no answer: {error}")),
                    retry_after: None,
                },
                None,
            )
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default();
    let json: Option<Json> = serde_json::from_str(&text).ok();
    let summary: String = text.chars().take(300).collect();
    let attempt = match status {
        200..=299 => Attempt::Accepted {
            provider_id: json.as_ref().and_then(|json| {
                id_field
                    .iter()
                    .find_map(|field| json.get(*field))
                    .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string))
            }),
        },
        429 | 500..=599 => Attempt::Temporary {
            error: format!("HTTP {status}: {summary}"),
            retry_after,
        },
        401 => Attempt::Refused {
            error: format!("HTTP 401 (the credentials were refused): {summary}"),
        },
        _ => Attempt::Permanent {
            error: format!("HTTP {status}: {summary}"),
            bounce: None,
        },
    };
    (attempt, json)
}

fn agent(sending: &Sending) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(sending.timeout.duration()))
        .http_status_as_error(false)
        .max_idle_connections_per_host(sending.connections.max(1))
        .build()
        .into()
}

/// Where SMS goes.
pub enum SmsSender {
    Twilio {
        agent: ureq::Agent,
        url: String,
        authorization: String,
    },
    Webhook {
        agent: ureq::Agent,
        url: String,
        body: Box<minijinja::Environment<'static>>,
        headers: Vec<(String, String)>,
    },
    Files(PathBuf),
}

/// What an SMS provider needs.
pub struct Sms<'a> {
    pub key: &'a MessageKey,
    pub to: &'a str,
    pub from: &'a str,
    pub body: &'a str,
    pub contact: &'a serde_json::Map<String, Json>,
}

impl SmsSender {
    pub fn new(transport: &SmsTransport, root: &Path) -> Result<SmsSender, String> {
        let what = "channels.sms.transport";
        match transport.kind {
            SmsTransportKind::File => {
                let folder = url_of(transport.url.as_ref(), transport.url_env.as_ref(), what)?;
                let folder = folder.strip_prefix("file:").unwrap_or(&folder);
                Ok(SmsSender::Files(root.join(folder)))
            }
            SmsTransportKind::Twilio => {
                let base = match (&transport.url, &transport.url_env) {
                    (None, None) => "https://api.twilio.com".to_string(),
                    (url, url_env) => url_of(url.as_ref(), url_env.as_ref(), what)?,
                };
                let read = |name: &str| env(name).map_err(|error| format!("{what}: {error}"));
                let sid = read(
                    transport
                        .account_sid_env
                        .as_deref()
                        .unwrap_or("TWILIO_ACCOUNT_SID"),
                )?;
                let token = read(
                    transport
                        .auth_token_env
                        .as_deref()
                        .unwrap_or("TWILIO_AUTH_TOKEN"),
                )?;
                let credentials =
                    base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
                Ok(SmsSender::Twilio {
                    agent: agent(&transport.sending),
                    url: format!(
                        "{}/2010-04-01/Accounts/{sid}/Messages.json",
                        base.trim_end_matches('/')
                    ),
                    authorization: format!("Basic {credentials}"),
                })
            }
            SmsTransportKind::Webhook => {
                let url = url_of(transport.url.as_ref(), transport.url_env.as_ref(), what)?;
                let body = transport.body.clone().ok_or_else(|| {
                    format!("{what}: a webhook needs `body`, the JSON template to post")
                })?;
                Ok(SmsSender::Webhook {
                    agent: agent(&transport.sending),
                    url,
                    body: Box::new(body_template(body, what)?),
                    headers: headers(&transport.headers_env)?,
                })
            }
        }
    }

    pub fn send(&self, sms: &Sms<'_>) -> Attempt {
        match self {
            SmsSender::Files(dir) => {
                let record = serde_json::json!({
                    "key": sms.key.as_str(), "to": sms.to, "from": sms.from, "body": sms.body,
                });
                write_file(
                    dir,
                    &file_name(sms.key, "json"),
                    record.to_string().as_bytes(),
                )
            }
            SmsSender::Twilio {
                agent,
                url,
                authorization,
            } => {
                let result = agent
                    .post(url)
                    .header("Authorization", authorization)
                    .header("Idempotency-Key", sms.key.header_value())
                    .send_form([("To", sms.to), ("From", sms.from), ("Body", sms.body)]);
                let (attempt, json) = http_outcome(result, &["sid"]);
                twilio_bounce(attempt, json.as_ref())
            }
            SmsSender::Webhook {
                agent,
                url,
                body,
                headers,
            } => {
                let context = minijinja::context! {
                    key => sms.key.as_str(), to => sms.to, from => sms.from, body => sms.body,
                    contact => minijinja::value::Serde(sms.contact),
                };
                match render_json(body, context) {
                    Ok(text) => post_json(agent, url, headers, sms.key, &text),
                    Err(error) => Attempt::permanent(error),
                }
            }
        }
    }
}

/// Twilio's error codes for a number that cannot get SMS: 21211 (not a
/// valid number), 21614 (not a mobile number) and 21610 (the person
/// replied STOP).
fn twilio_bounce(attempt: Attempt, json: Option<&Json>) -> Attempt {
    let Attempt::Permanent { error, .. } = attempt else {
        return attempt;
    };
    let code = json
        .and_then(|json| json.get("code"))
        .and_then(Json::as_u64);
    let bounce = match code {
        Some(21211 | 21614) => Some("bounced"),
        Some(21610) => Some("unsubscribed"),
        _ => None,
    };
    Attempt::Permanent { error, bounce }
}

/// A JSON body template, compiled once.
pub fn body_template(
    source: String,
    what: &str,
) -> Result<minijinja::Environment<'static>, String> {
    let mut environment = minijinja::Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    environment.set_fuel(Some(crate::templates::FUEL));
    environment
        .add_template_owned("body", source)
        .map_err(|error| format!("{what}: the body template: {error}"))?;
    Ok(environment)
}

/// Renders a body template and checks that it is JSON.
pub fn render_json(
    environment: &minijinja::Environment<'static>,
    context: minijinja::Value,
) -> Result<String, String> {
    let text = environment
        .get_template("body")
        .and_then(|template| crate::templates::render_bounded(&template, context))
        .map_err(|error| format!("cannot render the body: {error}"))?;
    serde_json::from_str::<Json>(&text)
        .map_err(|error| format!("the rendered body is not JSON ({error}): {text}"))?;
    Ok(text)
}

/// Header values read from the environment.
pub fn headers(
    names: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    names
        .iter()
        .map(|(header, variable)| Ok((header.clone(), env(variable)?)))
        .collect()
}

/// Posts a JSON body with the key in `Idempotency-Key`.
pub fn post_json(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(String, String)],
    key: &MessageKey,
    body: &str,
) -> Attempt {
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key.header_value());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    http_outcome(request.send(body), &["id", "sid", "message_id", "msgid"]).0
}

/// A webhook endpoint of `webhooks:`: its URL, headers and task body.
pub struct Endpoint {
    pub agent: ureq::Agent,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<minijinja::Environment<'static>>,
    pub pace: Pace,
}

impl Endpoint {
    pub fn new(
        name: &str,
        settings: &crate::settings::WebhookSettings,
    ) -> Result<Endpoint, String> {
        let what = format!("webhooks.{name}");
        Ok(Endpoint {
            agent: agent(&settings.sending),
            url: env(&settings.url_env).map_err(|error| format!("{what}: {error}"))?,
            headers: headers(&settings.headers_env).map_err(|error| format!("{what}: {error}"))?,
            body: settings
                .body
                .clone()
                .map(|body| body_template(body, &what))
                .transpose()?,
            pace: Pace::new(&settings.sending),
        })
    }
}
