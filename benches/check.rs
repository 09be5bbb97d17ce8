//! `cargo bench --bench check [-- --files N --runs R]`
//!
//! Generates a project of N realistic journey files (default 1,000) under
//! `target/bench-check/` and measures `journeyc check` over it: in process
//! (parse, analyze, all checks) and as the real command line, end to end.
//! Prints the median, minimum and maximum of R runs (default 10).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SETTINGS: &str = r#"timezone: Asia/Shanghai
locale: zh-CN
journeys: [journeys]
templates: templates
contact:
  first_name: string
  company: string?
  owner: string?
  lifetime_value: number
  deals_won: number
  lost_reason: { type: enum, values: [price, features, service, brand], optional: true }
  customer_type: { type: enum, values: [b2b, b2c] }
  last_seen_at: datetime
  birthday: date?
  event_date: date?
events:
  email_opened:
  email_clicked: { link: string }
  wechat_reply: { text: string }
  page_viewed: { page: string }
  demo_requested:
  order_placed: { amount: number, category: string }
  unsubscribed:
stages: [target, aware, interest, considering_price, opportunity, customer, advocate, dormant]
channels:
  email: { from: "Acme <hello@acme.example>", unsubscribe_url: "https://acme.example/unsubscribe" }
  sms: { from: "Acme", segment_limit: 2 }
  task: {}
webhooks:
  crm: { url_env: CRM_WEBHOOK_URL }
quiet_hours: "21:00..09:00"
caps: { email: 3 per 7d, sms: 1 per 3d }
holidays:
  mid_autumn: [2026-09-25, 2027-09-15]
  christmas: "12-25"
"#;

/// One journey file of about 60 lines, varied by `index`.
fn journey(index: usize) -> String {
    let stage = ["dormant", "aware", "interest", "customer"][index % 4];
    let threshold = 10_000 * (index % 9 + 1);
    let mut text = String::new();
    let _ = write!(
        text,
        r#"# Generated journey {index}: segmented win-back with an A/B test.
segment high_value_{index} = stage == "{stage}" and lifetime_value >= {threshold}

score engagement_{index} {{
  on event "email_opened" +5
  on event "page_viewed" where page starts_with "/pricing" +15
  on event "page_viewed" where page starts_with "/careers" -20
  no event within 30d -10
  decay half_life 30d
}}

journey journey_{index} {{
  title    "唤醒沉睡客户 {index}"
  audience stage == "{stage}" and not has_tag("no_contact") and segment(high_value_{index})
  entry    on stage "{stage}"
  reentry  after 180d
  goal     event "demo_requested" within 120d then stage "interest"
  exit     on event "unsubscribed"
  limits   {{ email 1 per 14d  sms 1 per 30d  quiet 21:00..09:00 }}
  rescue   when days_since(last_seen_at) > 60 -> last_call

  split {{
    when lifetime_value >= {threshold} and deals_won > 0 {{
      email "winback/vip"
      vip_wait: wait 7d for event "email_opened" {{
        got {{ task owner "给 {{{{ contact.first_name }}}} 打电话：重新打开了 VIP 邮件" due 1d }}
        timeout {{ goto monthly }}
      }}
    }}
    when lost_reason == "price" {{
      wait 14d
      email "winback/new_pricing"
    }}
    when lost_reason in ["features", "service"] {{
      wait 14d
      email "winback/new_release"
    }}
    else {{
      tag "generic_winback"
    }}
  }}
  monthly: wait 30d
  ab subject_{index} {{
    variant plain 45% {{ email "winback/plain" }}
    variant emoji 45% {{ email "winback/emoji" }}
    holdout 10%
  }}
  repeat 4 times every 30d {{
    wait 14d
    email "winback/monthly"
  }}
  wait 7d for event "wechat_reply" where text contains any ["price", "价格", "多少钱"] {{
    got {{ stage "considering_price"  score engagement_{index} +10 }}
    timeout {{ tag "no_reply" }}
  }}
  last_call: sms "winback/last_call" expires after 2d
}}
"#
    );
    text
}

/// The templates every generated journey sends, as a real project has
/// them: `check` renders each against the contact schema.
const EMAILS: [&str; 6] = [
    "vip",
    "new_pricing",
    "new_release",
    "plain",
    "emoji",
    "monthly",
];

fn write_templates(root: &Path) {
    let folder = root.join("templates/winback");
    std::fs::create_dir_all(&folder).expect("create templates folder");
    for name in EMAILS {
        std::fs::write(
            folder.join(format!("{name}.email")),
            format!(
                "---\nsubject: \"{{{{ contact.first_name }}}}，{name}\"\n---\n{{% block text %}}\n{{{{ contact.first_name }}}}您好，\n\n{{% if contact.company %}}{{{{ contact.company }}}}的{{% endif %}}会员专属：{name}。\n\n退订：{{{{ unsubscribe_url }}}}\n{{% endblock %}}\n"
            ),
        )
        .expect("write template");
    }
    std::fs::write(
        folder.join("last_call.sms"),
        "{{ contact.first_name }}，好久不见！送您一张滤芯换新券，14天内有效。回T退订\n",
    )
    .expect("write template");
}

fn generate(root: &Path, files: usize) -> PathBuf {
    let journeys = root.join("journeys");
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(&journeys).expect("create bench folder");
    std::fs::write(root.join("journeyc.yaml"), SETTINGS).expect("write settings");
    write_templates(root);
    for index in 0..files {
        std::fs::write(
            journeys.join(format!("journey_{index:04}.journey")),
            journey(index),
        )
        .expect("write journey");
    }
    root.join("journeyc.yaml")
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{label:<34} median {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms   ({} runs)",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}

fn option(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let files = option(&args, "--files", 1000);
    let runs = option(&args, "--runs", 10).max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-check");
    let settings = generate(&root, files);
    let bytes: u64 = std::fs::read_dir(root.join("journeys"))
        .expect("bench folder")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    println!(
        "journeyc check over {files} generated journey files ({} KiB)",
        bytes / 1024
    );

    let mut in_process = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let checked =
            journeyc::project::load(&settings, &BTreeSet::new()).expect("bench project loads");
        let problems = checked.diagnostics_for(None).len();
        in_process.push(started.elapsed());
        assert_eq!(
            problems,
            0,
            "the generated journeys must check clean: {:?}",
            checked
                .diagnostics_for(None)
                .first()
                .map(|diagnostic| &diagnostic.message)
        );
        assert_eq!(checked.analysis.journeys.len(), files);
    }
    summary("in process (parse + analyze)", in_process);

    let mut command_line = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_journeyc"))
            .args(["check", "--format", "json"])
            .arg(root.join("journeys"))
            .output()
            .expect("journeyc runs");
        command_line.push(started.elapsed());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    summary("journeyc check (process, end to end)", command_line);
}
