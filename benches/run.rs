//! `cargo bench --bench run [-- --contacts N --nights K --poll-proc --postgres [--workers W] --floor]`
//!
//! The nightly run at scale. Copies the `journeys/` project (settings,
//! journey files, templates) to `target/bench-run/`, so the store
//! `journeyc.db` is created there, and generates a population for it:
//! N contacts (default 1,000,000) as CSV and a few events per contact as
//! JSON Lines, streamed to disk as they are generated. Chinese and English
//! names, five timezones, every field of the contact schema, stages over the
//! whole funnel, tags, and events of the catalog spread over the six weeks
//! before the first run; the same N always gives the same files.
//!
//! Then, with the release binary: imports the contacts and the events
//! (timing each import), and runs `journeyc run --format json` for K
//! consecutive nights (default 3) at 02:00 Asia/Shanghai (18:00 UTC). For
//! each night it prints the wall time, the peak memory of the process, the
//! contacts per second, the outbox rows queued per second and the
//! transitions. It asserts nothing about speed; it checks that every command
//! succeeds, that every generated row is imported, and that the first night
//! enrols someone. Peak memory is GNU time's maximum RSS when
//! `/usr/bin/time` is there, otherwise (or with `--poll-proc`) `VmHWM`
//! polled from `/proc/PID/status`.
//!
//! The journeys are deployed by a run on the empty store the night before
//! the first night: the contacts and their six weeks of history arrive in
//! between, so the first night enrols what the last day brought (stage and
//! tag changes of the import, the day's events) with the whole history
//! there for conditions and scores, and later nights are ordinary nights.
//! (Deployed before the six weeks began, the first night would walk every
//! contact through all six: a catch-up, measured on its own.)
//! `--binary PATH` runs another build of journeyc (an earlier commit's,
//! for a ratio measured in the same session). `--postgres` then does the
//! same on a PostgreSQL store (a cluster the bench starts in a temporary
//! folder, as the tests do) and prints each night's time on both, as a
//! ratio from the same run; with `--workers W` its nights run with
//! `journeyc run --workers W`. `--floor` measures the first night's floor
//! on SQLite in the same run: on a copy of the store from before the
//! night, read every contact once and write the rows the night wrote,
//! set-based, with the same indexes.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::{json, Value as Json};

/// When the contacts and events are imported: the afternoon before the
/// first run. Stage and tag changes made by the import are stamped then.
const IMPORT_AT: &str = "2026-11-23T12:00:00Z";
/// The deployment: a run on the empty store the night before the first
/// night.
const DEPLOY_AT: &str = "2026-11-22T18:00:00Z";
/// The first run: 02:00 in Shanghai on 24 November 2026.
const FIRST_NIGHT: &str = "2026-11-23T18:00:00Z";
/// Events are spread over this many days before the import.
const EVENT_DAYS: i64 = 42;
/// The first day of the trade show the `expo_invited` contacts are invited to.
const EXPO_DATE: &str = "2026-12-09";
/// The release binary, copied into the bench folder at the start: a
/// `cargo build` elsewhere during a long bench cannot swap it midway.
const BINARY: &str = "journeyc-bench";

#[path = "../tests/integration/common/servers.rs"]
#[allow(dead_code)]
mod servers;

#[path = "../tests/integration/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

/// The crate's folder (the test servers' harness asks for it).
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------ random

/// SplitMix64: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + i64::try_from(self.below(high.abs_diff(low) + 1)).unwrap_or(0)
    }

    fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }

    fn weighted<'a, T>(&mut self, items: &'a [(T, u64)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.below(total);
        for (item, weight) in items {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        &items[items.len() - 1].0
    }
}

// ------------------------------------------------------------- population

const SURNAMES: &[(&str, &str)] = &[
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
    ("何", "he"),
    ("林", "lin"),
    ("罗", "luo"),
    ("高", "gao"),
];

const GIVEN_NAMES: &[(&str, &str)] = &[
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("秀英", "xiuying"),
    ("晓东", "xiaodong"),
    ("思远", "siyuan"),
    ("雨桐", "yutong"),
    ("子涵", "zihan"),
    ("浩然", "haoran"),
    ("欣怡", "xinyi"),
    ("俊杰", "junjie"),
    ("佳琪", "jiaqi"),
];

const ENGLISH_FIRST: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Susan",
    "Emma",
    "Oliver",
    "Sophie",
    "Jack",
    "Amelia",
    "Thomas",
    "Chloe",
    "Daniel",
    "Hiroshi",
    "Yuki",
    "Grace",
    "Liam",
];

const ENGLISH_LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Clark", "Walker", "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams",
    "Nelson", "Tanaka", "Sato", "O'Brien", "Chen",
];

struct Zone {
    name: &'static str,
    weight: u64,
    cities: &'static [&'static str],
    /// Country calling code and the local part's prefix.
    phone: (&'static str, &'static str),
    chinese: bool,
}

const ZONES: &[Zone] = &[
    Zone {
        name: "Asia/Shanghai",
        weight: 80,
        cities: &[
            "上海", "北京", "深圳", "广州", "杭州", "成都", "南京", "苏州", "武汉", "西安", "天津",
            "重庆",
        ],
        phone: ("+86", "13"),
        chinese: true,
    },
    Zone {
        name: "America/New_York",
        weight: 6,
        cities: &["New York", "Boston", "Philadelphia"],
        phone: ("+1", "212555"),
        chinese: false,
    },
    Zone {
        name: "Europe/London",
        weight: 5,
        cities: &["London", "Manchester"],
        phone: ("+44", "207946"),
        chinese: false,
    },
    Zone {
        name: "Asia/Tokyo",
        weight: 5,
        cities: &["Tokyo", "Osaka"],
        phone: ("+81", "3555"),
        chinese: false,
    },
    Zone {
        name: "Australia/Sydney",
        weight: 4,
        cities: &["Sydney", "Melbourne"],
        phone: ("+61", "2555"),
        chinese: false,
    },
];

/// The stage list of `journeys/journeyc.yaml`, weighted the way a pool of
/// mostly old contacts looks: a large dormant pool, customers, early funnel.
const STAGES: &[(&str, u64)] = &[
    ("target", 10),
    ("aware", 14),
    ("interest", 8),
    ("mql", 4),
    ("considering_price", 3),
    ("sql", 2),
    ("opportunity", 3),
    ("customer", 18),
    ("advocate", 6),
    ("dormant", 32),
];

const INDUSTRIES: &[(&str, u64)] = &[
    ("office", 30),
    ("education", 18),
    ("hospitality", 14),
    ("healthcare", 12),
    ("manufacturing", 12),
    ("retail", 9),
    ("other", 5),
];

const COMPANY_WORDS: &[&str] = &[
    "华信", "远航", "博雅", "瑞丰", "启明", "鼎盛", "新元", "恒通", "明德", "安康", "金桥", "长青",
    "海川", "天成", "嘉禾", "正泰",
];

const ENGLISH_COMPANIES: &[&str] = &[
    "Northwind",
    "Harbor",
    "Bluewater",
    "Riverside",
    "Summit",
    "Oakridge",
    "Lakeside",
    "Meridian",
];

const JOB_TITLES: &[&str] = &[
    "行政经理",
    "采购主管",
    "后勤总监",
    "总经理",
    "办公室主任",
    "行政专员",
    "店长",
    "工程部经理",
    "Facilities Manager",
    "Procurement Director",
    "Office Manager",
];

const OWNERS: &[&str] = &[
    "li.na@qingyuan.example",
    "zhang.wei@qingyuan.example",
    "wang.fang@qingyuan.example",
    "chen.jie@qingyuan.example",
    "liu.yang@qingyuan.example",
    "zhao.min@qingyuan.example",
    "sun.lei@qingyuan.example",
    "zhou.tao@qingyuan.example",
    "wx-operator-01",
    "wx-operator-02",
    "wx-operator-03",
    "wx-operator-04",
];

const FREE_MAIL: &[&str] = &["qq.com", "163.com", "126.com", "gmail.com", "outlook.com"];

const CATEGORIES: &[&str] = &["purifier", "filter", "dispenser", "service"];

const TEMPLATES_SEEN: &[&str] = &[
    "winback/vip",
    "winback/whats_new",
    "winback/monthly",
    "winback/new_pricing",
    "nurture/why_buy",
    "nurture/cost_whitepaper",
    "post_purchase/thank_you",
    "post_purchase/nps_survey",
    "referral/give_and_get",
    "expo/invitation",
];

const PAGES: &[(&str, u64)] = &[
    ("/pricing", 14),
    ("/pricing/commercial", 6),
    ("/cases/schools", 6),
    ("/cases/hotels", 5),
    ("/products/c7", 16),
    ("/products/filters", 12),
    ("/blog/water-quality", 20),
    ("/careers", 4),
    ("/", 17),
];

const REPLIES: &[&str] = &[
    "好的，谢谢",
    "收到",
    "请问价格多少？",
    "多少钱一台",
    "家里是自来水，有必要装吗",
    "有优惠吗",
    "报价发我一下",
    "安装要多久？",
    "滤芯多久换一次",
    "OK, thanks",
    "what's the price?",
];

const WHITEPAPERS: &[&str] = &[
    "办公室饮水成本白皮书",
    "学校直饮水解决方案",
    "酒店客房饮水指南",
    "Office water cost guide",
];

const SHOW: &str = "2026上海国际水展";

fn pick_zone(rng: &mut Rng) -> &'static Zone {
    let total: u64 = ZONES.iter().map(|zone| zone.weight).sum();
    let mut roll = rng.below(total);
    for zone in ZONES {
        if roll < zone.weight {
            return zone;
        }
        roll -= zone.weight;
    }
    &ZONES[0]
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn rfc3339(moment: DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a valid instant")
        .with_timezone(&Utc)
}

/// An instant `days_back` days (and some seconds) before `base`.
fn days_before(rng: &mut Rng, base: DateTime<Utc>, low: i64, high: i64) -> DateTime<Utc> {
    base - TimeDelta::days(rng.between(low, high)) - TimeDelta::seconds(rng.between(0, 86_399))
}

const PROSPECT_STAGES: &[&str] = &[
    "target",
    "aware",
    "interest",
    "mql",
    "considering_price",
    "sql",
    "opportunity",
];

/// One contact: its CSV row, and its events appended to `events`.
#[allow(clippy::too_many_lines)]
fn contact(
    rng: &mut Rng,
    index: usize,
    import_at: DateTime<Utc>,
    events: &mut impl std::io::Write,
    event_count: &mut u64,
) -> std::io::Result<String> {
    let id = format!("c-{index:07}");
    let zone = pick_zone(rng);
    let stage = *rng.weighted(STAGES);
    let b2b = rng.percent(45);
    let chinese = if zone.chinese {
        rng.percent(92)
    } else {
        rng.percent(10)
    };
    let (first_name, last_name, handle) = if chinese {
        let (surname, surname_pinyin) = *rng.pick(SURNAMES);
        let (given, given_pinyin) = *rng.pick(GIVEN_NAMES);
        (
            given.to_string(),
            surname.to_string(),
            format!("{surname_pinyin}{given_pinyin}"),
        )
    } else {
        let first = *rng.pick(ENGLISH_FIRST);
        let last = *rng.pick(ENGLISH_LAST);
        (
            first.to_string(),
            last.to_string(),
            format!(
                "{}.{}",
                first.to_lowercase(),
                last.to_lowercase().replace('\'', "")
            ),
        )
    };
    let city = *rng.pick(zone.cities);
    let industry = b2b.then(|| *rng.weighted(INDUSTRIES));
    let company = industry.map(|industry| {
        if zone.chinese {
            let suffix = match industry {
                "office" => "科技有限公司",
                "education" => "实验学校",
                "hospitality" => "大酒店",
                "healthcare" => "口腔诊所",
                "manufacturing" => "精密制造有限公司",
                "retail" => "商贸有限公司",
                _ => "物业管理有限公司",
            };
            format!("{city}{}{suffix}", rng.pick(COMPANY_WORDS))
        } else {
            let suffix = match industry {
                "education" => "Academy",
                "hospitality" => "Hotels",
                "healthcare" => "Dental Clinic",
                "manufacturing" => "Manufacturing Ltd",
                _ => "Group",
            };
            format!("{} {suffix}", rng.pick(ENGLISH_COMPANIES))
        }
    });
    let domain = match (&company, rng.percent(20)) {
        (Some(_), false) => format!("corp{}.example.com", index % 50_000),
        _ => (*rng.pick(FREE_MAIL)).to_string(),
    };
    let email = if rng.percent(93) {
        format!("{handle}{}@{domain}", index % 10_000)
    } else {
        String::new()
    };
    let phone = if rng.percent(85) {
        format!("{}{}{:05}", zone.phone.0, zone.phone.1, rng.below(100_000))
    } else {
        String::new()
    };
    let customer_like = matches!(stage, "customer" | "advocate");
    let dormant = stage == "dormant";
    let former_customer = customer_like || (dormant && rng.percent(60));
    let orders = if former_customer {
        if b2b {
            rng.between(1, 8)
        } else {
            rng.between(1, 12)
        }
    } else {
        0
    };
    let deals_won = if b2b { (orders + 1) / 2 } else { orders };
    let lifetime_value = if orders == 0 {
        0
    } else if b2b {
        orders * rng.between(8_000, 120_000)
    } else {
        orders * rng.between(199, 4_999)
    };
    let lost_bid = dormant && !former_customer;
    let gave_reason = if lost_bid {
        rng.percent(90)
    } else {
        stage == "opportunity" && rng.percent(10)
    };
    let lost_reason = if gave_reason {
        *rng.pick(&["price", "features", "service", "brand"])
    } else {
        ""
    };
    let bid_quality = if lost_bid && b2b {
        *rng.pick(&["high", "low"])
    } else {
        ""
    };
    let mut last_seen_at = match stage {
        _ if rng.percent(10) => None,
        "dormant" => Some(days_before(rng, import_at, 120, 900)),
        "customer" | "advocate" => Some(days_before(rng, import_at, 0, 120)),
        _ => Some(days_before(rng, import_at, 0, 60)),
    };
    let mut last_order_at = (orders > 0).then(|| {
        if dormant {
            days_before(rng, import_at, 200, 1_000)
        } else {
            days_before(rng, import_at, 10, 300)
        }
    });
    let mut last_order_category = (orders > 0).then(|| *rng.pick(CATEGORIES));
    let birthday = rng.percent(55).then(|| {
        NaiveDate::from_ymd_opt(
            i32::try_from(rng.between(1960, 2002)).unwrap_or(1980),
            u32::try_from(rng.between(1, 12)).unwrap_or(1),
            u32::try_from(rng.between(1, 28)).unwrap_or(1),
        )
        .expect("a valid date")
    });
    let prospect = PROSPECT_STAGES.contains(&stage);
    let mut tags: Vec<&str> = Vec::new();
    let expo = b2b && (prospect || dormant) && rng.percent(8);
    if expo {
        tags.push("expo_invited");
    }
    if !b2b && !customer_like && rng.percent(3) {
        tags.push("wechat_added");
    }
    if dormant && rng.percent(3) {
        tags.push("no_winback");
    }
    if rng.percent(3) {
        tags.push("no_greetings");
    }
    if rng.percent(1) {
        tags.push("no_marketing");
    }
    if b2b && rng.percent(2) {
        tags.push("phone_invalid");
    }
    if lifetime_value >= 100_000 && rng.percent(50) {
        tags.push("vip");
    }
    if !b2b && rng.percent(5) {
        tags.push("sop_day123_done");
    }
    if rng.percent(4) {
        tags.push(if chinese {
            "wechat_group"
        } else {
            "newsletter"
        });
    }
    let created_at = days_before(rng, import_at, 30, 2_500);
    let owner = if rng.percent(85) {
        if b2b {
            *rng.pick(&OWNERS[..8])
        } else {
            *rng.pick(&OWNERS[8..])
        }
    } else {
        ""
    };

    // Events: a few per contact over the weeks before the import, by where
    // the contact stands.
    let count = match stage {
        "dormant" => rng.between(0, 3),
        "target" => rng.between(0, 3),
        "customer" | "advocate" => rng.between(1, 6),
        _ => rng.between(2, 8),
    };
    let kinds: &[(&str, u64)] = match (stage, b2b) {
        ("dormant", _) => &[
            ("email_opened", 50),
            ("page_viewed", 25),
            ("email_clicked", 8),
            ("bounced", 6),
            ("unsubscribed", 3),
            ("order_placed", 3),
            ("demo_requested", 2),
            ("survey_completed", 3),
        ],
        ("customer" | "advocate", _) => &[
            ("email_opened", 30),
            ("order_placed", 14),
            ("survey_completed", 10),
            ("page_viewed", 20),
            ("coupon_redeemed", 8),
            ("email_clicked", 8),
            ("referral_made", 5),
            ("wechat_reply", 5),
        ],
        (_, true) => &[
            ("page_viewed", 34),
            ("email_opened", 20),
            ("email_clicked", 8),
            ("whitepaper_downloaded", 10),
            ("livestream_watched", 8),
            ("demo_requested", 5),
            ("offline_event_attended", 5),
            ("event_registered", 3),
            ("booth_visited", 2),
            ("event_checked_in", 2),
            ("unsubscribed", 1),
        ],
        (_, false) => &[
            ("wechat_reply", 30),
            ("page_viewed", 25),
            ("email_opened", 15),
            ("livestream_watched", 12),
            ("coupon_redeemed", 5),
            ("demo_requested", 5),
            ("order_placed", 4),
            ("unsubscribed", 1),
        ],
    };
    for number in 0..count {
        let name = *rng.weighted(kinds);
        let at = days_before(rng, import_at, 0, EVENT_DAYS - 1);
        let properties = match name {
            "email_opened" => json!({"template": rng.pick(TEMPLATES_SEEN)}),
            "email_clicked" => {
                let template = *rng.pick(TEMPLATES_SEEN);
                json!({"template": template, "url": format!("https://qingyuan.example/{}", template.replace('/', "-"))})
            }
            "wechat_reply" => json!({"text": rng.pick(REPLIES)}),
            "page_viewed" => json!({"page": rng.weighted(PAGES)}),
            "order_placed" => {
                let category = *rng.pick(CATEGORIES);
                let amount = if b2b {
                    rng.between(8_000, 300_000)
                } else {
                    rng.between(199, 6_999)
                };
                last_order_at = Some(last_order_at.map_or(at, |before| before.max(at)));
                last_order_category = Some(category);
                last_seen_at = Some(last_seen_at.map_or(at, |before| before.max(at)));
                json!({"amount": amount, "category": category})
            }
            "coupon_redeemed" => json!({"code": format!("QY-{:05}", rng.below(100_000))}),
            "livestream_watched" => json!({"minutes": rng.between(1, 90)}),
            "whitepaper_downloaded" => json!({"title": rng.pick(WHITEPAPERS)}),
            "event_registered" | "event_checked_in" | "booth_visited" => json!({"show": SHOW}),
            "survey_completed" => json!({"nps": rng.between(0, 10)}),
            "referral_made" => {
                json!({"referee": format!("{}{}", rng.pick(SURNAMES).0, rng.pick(GIVEN_NAMES).0)})
            }
            _ => Json::Null,
        };
        let mut event = json!({
            "id": format!("e-{index:07}-{number}"),
            "contact_id": id,
            "name": name,
            "at": rfc3339(at),
        });
        if !properties.is_null() {
            event["properties"] = properties;
        }
        writeln!(events, "{event}")?;
        *event_count += 1;
    }

    let company_size = b2b.then(|| rng.between(5, 5_000));
    let job_title = (b2b && rng.percent(80)).then(|| *rng.pick(JOB_TITLES));
    let wechat_id = (chinese && rng.percent(60)).then(|| format!("wxid_{:010x}", rng.next() >> 24));
    let event_date = expo.then_some(EXPO_DATE);
    let cells: Vec<String> = vec![
        id,
        first_name,
        if rng.percent(90) {
            last_name
        } else {
            String::new()
        },
        email,
        phone,
        zone.name.to_string(),
        rfc3339(created_at),
        stage.to_string(),
        tags.join(";"),
        company.unwrap_or_default(),
        job_title.unwrap_or_default().to_string(),
        industry.unwrap_or_default().to_string(),
        company_size
            .map(|size| size.to_string())
            .unwrap_or_default(),
        if rng.percent(90) {
            city.to_string()
        } else {
            String::new()
        },
        owner.to_string(),
        wechat_id.unwrap_or_default(),
        if b2b { "b2b" } else { "b2c" }.to_string(),
        lifetime_value.to_string(),
        deals_won.to_string(),
        orders.to_string(),
        lost_reason.to_string(),
        bid_quality.to_string(),
        last_seen_at.map(rfc3339).unwrap_or_default(),
        last_order_at.map(rfc3339).unwrap_or_default(),
        last_order_category.unwrap_or_default().to_string(),
        birthday.map(|date| date.to_string()).unwrap_or_default(),
        event_date.unwrap_or_default().to_string(),
    ];
    let mut row = String::new();
    for (number, cell) in cells.iter().enumerate() {
        if number > 0 {
            row.push(',');
        }
        row.push_str(&csv_cell(cell));
    }
    Ok(row)
}

const HEADER: &str = "id,first_name,last_name,email,phone,timezone,created_at,stage,tags,company,job_title,industry,company_size,city,owner,wechat_id,customer_type,lifetime_value,deals_won,orders_count,lost_reason,bid_quality,last_seen_at,last_order_at,last_order_category,birthday,event_date";

/// Writes `contacts.csv` and `events.jsonl` under `root`; returns the
/// number of events.
fn generate(root: &Path, contacts: usize) -> std::io::Result<u64> {
    let import_at = instant(IMPORT_AT);
    let mut rng = Rng(0x6a6f_7572_6e65_7963 ^ contacts as u64);
    let mut csv = BufWriter::with_capacity(1 << 20, File::create(root.join("contacts.csv"))?);
    let mut jsonl = BufWriter::with_capacity(1 << 20, File::create(root.join("events.jsonl"))?);
    writeln!(csv, "{HEADER}")?;
    let mut events = 0;
    for index in 0..contacts {
        let row = contact(&mut rng, index, import_at, &mut jsonl, &mut events)?;
        writeln!(csv, "{row}")?;
    }
    csv.flush()?;
    jsonl.flush()?;
    Ok(events)
}

/// Copies the settings, the journey files and the templates of `journeys/`.
fn copy_project(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create bench folder");
    for entry in std::fs::read_dir(from).expect("journeys/ is readable") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("a name").to_owned();
        let is_project_file = path
            .extension()
            .is_some_and(|extension| extension == "journey")
            || name == "journeyc.yaml";
        if path.is_dir() && name == "templates" {
            copy_dir(&path, &to.join(&name));
        } else if is_project_file {
            std::fs::copy(&path, to.join(&name)).expect("copy a project file");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

// ------------------------------------------------------------- measuring

/// How the peak memory of a child is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Meter {
    /// GNU time's `%M`: the child's maximum resident set size.
    GnuTime,
    /// `VmHWM` of `/proc/PID/status`, polled every few milliseconds.
    Proc,
}

impl Meter {
    fn detect() -> Self {
        let works = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o", "/dev/null", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if works {
            Meter::GnuTime
        } else {
            Meter::Proc
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Meter::GnuTime => "maximum RSS from /usr/bin/time -f %M",
            Meter::Proc => "VmHWM from /proc/PID/status, polled every 5 ms",
        }
    }
}

struct Measured {
    status: ExitStatus,
    wall: Duration,
    peak_kib: u64,
    stdout: String,
    stderr: String,
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the release binary in `dir` with `args`, timing it and reading its
/// peak memory. Output goes to files, so a chatty child never blocks on a
/// full pipe.
fn measure(meter: Meter, dir: &Path, args: &[&str]) -> Measured {
    let binary = dir.join(BINARY);
    let out_path = dir.join("bench.stdout");
    let err_path = dir.join("bench.stderr");
    let memory_path = dir.join("bench.memory");
    let mut command = match meter {
        Meter::GnuTime => {
            let mut command = Command::new("/usr/bin/time");
            command
                .arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(&memory_path)
                .arg(&binary);
            command
        }
        Meter::Proc => Command::new(&binary),
    };
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"));
    let started = Instant::now();
    let mut child = command.spawn().expect("journeyc starts");
    let mut peak_kib = 0;
    let status = loop {
        if meter == Meter::Proc {
            if let Some(kib) = vm_hwm(child.id()) {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait().expect("wait for journeyc") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    if meter == Meter::GnuTime {
        // The last line: GNU time writes a note first when the exit code is
        // not 0.
        peak_kib = std::fs::read_to_string(&memory_path)
            .ok()
            .and_then(|text| {
                text.lines()
                    .last()
                    .and_then(|line| line.trim().parse().ok())
            })
            .unwrap_or(0);
    }
    Measured {
        status,
        wall,
        peak_kib,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn succeeded(what: &str, measured: &Measured) {
    assert!(
        measured.status.success(),
        "{what} failed ({}):\n{}\n{}",
        measured.status,
        measured.stdout.chars().take(4_000).collect::<String>(),
        measured.stderr.chars().take(4_000).collect::<String>()
    );
}

fn mib(kib: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let kib = kib as f64;
    kib / 1024.0
}

fn per_second(count: u64, wall: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    count / wall.as_secs_f64()
}

fn file_mib(path: &Path) -> f64 {
    let bytes = std::fs::metadata(path).map_or(0, |metadata| metadata.len());
    mib(bytes / 1024)
}

/// The store's size: the database and its write-ahead log.
/// The store before the first night, kept as `floor.db` for the floor.
fn save_before_first_night(root: &Path) {
    let _ = std::fs::remove_file(root.join("floor.db"));
    let store = rusqlite::Connection::open(root.join("journeyc.db")).expect("the store opens");
    store
        .execute("VACUUM INTO ?1", [root.join("floor.db").to_string_lossy()])
        .expect("VACUUM INTO floor.db");
}

/// The floor of the first night on SQLite: on the store as it was before
/// the night (`floor.db`), read every contact once and write the rows the
/// night wrote (enrolments, transitions, outbox, assignments, each
/// contact's wake) set-based, from the store after the night, in one
/// transaction, with the same indexes. What any first night must at least
/// cost on this machine.
fn measure_floor(root: &Path) -> Duration {
    let mut floor =
        rusqlite::Connection::open(root.join("floor.db")).expect("the floor store opens");
    floor
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .expect("pragmas");
    floor
        .execute(
            "ATTACH ?1 AS night",
            [root.join("journeyc.db").to_string_lossy()],
        )
        .expect("attach the store after the night");
    let started = Instant::now();
    let transaction = floor.transaction().expect("a transaction");
    {
        let mut contacts = transaction
            .prepare("SELECT id, data, wake_at, touched FROM main.contacts")
            .expect("prepare");
        let mut rows = contacts.query([]).expect("query");
        let mut bytes = 0usize;
        while let Some(row) = rows.next().expect("a row") {
            bytes += row
                .get_ref(1)
                .expect("data")
                .as_bytes()
                .map_or(0, <[u8]>::len);
        }
        assert!(bytes > 0, "the contacts were read");
    }
    let mut written = 0;
    for sql in [
        "INSERT INTO main.enrolments SELECT * FROM night.enrolments WHERE id > (SELECT COALESCE(MAX(id), 0) FROM main.enrolments)",
        "INSERT INTO main.transitions SELECT * FROM night.transitions WHERE id > (SELECT COALESCE(MAX(id), 0) FROM main.transitions)",
        "INSERT INTO main.outbox SELECT * FROM night.outbox WHERE id > (SELECT COALESCE(MAX(id), 0) FROM main.outbox)",
        "INSERT OR IGNORE INTO main.assignments SELECT * FROM night.assignments",
        "UPDATE main.contacts SET wake_at = after.wake_at FROM night.contacts AS after
         WHERE after.id = main.contacts.id AND after.wake_at IS NOT main.contacts.wake_at",
    ] {
        written += transaction.execute(sql, []).expect(sql);
    }
    transaction.commit().expect("commit");
    let elapsed = started.elapsed();
    assert!(written > 0, "the floor wrote the night's rows");
    println!("       floor wrote {written} rows");
    elapsed
}

fn store_mib(root: &Path) -> f64 {
    ["journeyc.db", "journeyc.db-wal"]
        .iter()
        .map(|name| file_mib(&root.join(name)))
        .sum()
}

fn option(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .and_then(|value| value.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn count(counts: &Json, name: &str) -> u64 {
    counts[name].as_u64().unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let contacts = option(&args, "--contacts", 1_000_000).max(1);
    let nights = option(&args, "--nights", 3).max(1);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root: PathBuf = manifest.join("target/bench-run");
    let _ = std::fs::remove_dir_all(&root);
    copy_project(&manifest.join("journeys"), &root);
    let binary = args
        .iter()
        .position(|arg| arg == "--binary")
        .and_then(|index| args.get(index + 1))
        .map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_journeyc")),
            PathBuf::from,
        );
    std::fs::copy(&binary, root.join(BINARY))
        .unwrap_or_else(|error| panic!("copy the binary {}: {error}", binary.display()));
    println!("binary: {}", binary.display());

    let started = Instant::now();
    let events = generate(&root, contacts).expect("write the population");
    println!(
        "generated {contacts} contacts ({:.1} MiB CSV) and {events} events ({:.1} MiB JSON Lines) in {:.1} s under {}",
        file_mib(&root.join("contacts.csv")),
        file_mib(&root.join("events.jsonl")),
        started.elapsed().as_secs_f64(),
        root.display()
    );
    let meter = if args.iter().any(|arg| arg == "--poll-proc") {
        Meter::Proc
    } else {
        Meter::detect()
    };
    println!("peak memory: {}", meter.describe());
    println!();

    let floor = args.iter().any(|arg| arg == "--floor");
    let workers = args
        .iter()
        .any(|arg| arg == "--workers")
        .then(|| option(&args, "--workers", 2));
    let sqlite = nights_on(
        meter,
        &root,
        (contacts, events),
        nights,
        "SQLite",
        None,
        floor,
    );
    if args.iter().any(|arg| arg == "--postgres") {
        // The same population and nights on PostgreSQL: a cluster of its
        // own in a temporary folder (the tests' harness), a fresh database.
        for name in ["journeyc.db", "journeyc.db-wal", "journeyc.db-shm"] {
            let _ = std::fs::remove_file(root.join(name));
        }
        postgres::use_store(&root, &postgres::Cluster::get().database());
        let label = workers.map_or_else(
            || "PostgreSQL".to_string(),
            |count| format!("PostgreSQL, --workers {count}"),
        );
        let postgres = nights_on(
            meter,
            &root,
            (contacts, events),
            nights,
            &label,
            workers,
            false,
        );
        println!();
        println!("night  SQLite s  PostgreSQL s  ratio (same run)");
        for (night, ((sqlite, sqlite_counts), (postgres, postgres_counts))) in
            sqlite.iter().zip(&postgres).enumerate()
        {
            assert_eq!(
                sqlite_counts,
                postgres_counts,
                "night {}: both stores decide the same",
                night + 1
            );
            println!(
                "{:<6} {:>8.2} {:>13.2} {:>7.2}",
                night + 1,
                sqlite.as_secs_f64(),
                postgres.as_secs_f64(),
                postgres.as_secs_f64() / sqlite.as_secs_f64().max(1e-9)
            );
        }
    }
}

/// Deploys, imports the population and runs the nights on the store the
/// project in `root` names; prints each step and returns each night's wall
/// time.
fn nights_on(
    meter: Meter,
    root: &Path,
    (contacts, events): (usize, u64),
    nights: usize,
    store: &str,
    workers: Option<usize>,
    floor: bool,
) -> Vec<(Duration, String)> {
    println!("--- {store}");
    let root = &root.to_path_buf();
    let deployed = measure(
        meter,
        root,
        &["run", "--now", DEPLOY_AT, "--format", "json"],
    );
    succeeded(&format!("journeyc run --now {DEPLOY_AT}"), &deployed);
    println!("deployed at {DEPLOY_AT} (a run on the empty store)");
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<16} {:>10} {:>9} {:>10} {:>12}",
        "import", "rows", "wall s", "rows/s", "peak MiB"
    );
    for (kind, file, rows) in [
        ("contacts", "contacts.csv", contacts as u64),
        ("events", "events.jsonl", events),
    ] {
        let measured = measure(
            meter,
            root,
            &["import", kind, file, "--now", IMPORT_AT, "--format", "json"],
        );
        succeeded(&format!("journeyc import {kind}"), &measured);
        let report: Json = serde_json::from_str(measured.stdout.trim()).expect("a JSON report");
        assert_eq!(
            report["created"].as_u64(),
            Some(rows),
            "every generated {kind} row is imported: {}",
            measured.stdout.chars().take(4_000).collect::<String>()
        );
        let _ = writeln!(
            table,
            "{:<16} {:>10} {:>9.1} {:>10.0} {:>12.1}",
            kind,
            rows,
            measured.wall.as_secs_f64(),
            per_second(rows, measured.wall),
            mib(measured.peak_kib)
        );
    }
    print!("{table}");
    println!("store after import: {:.1} MiB", store_mib(root));
    println!();

    let first = instant(FIRST_NIGHT);
    println!(
        "{:<6} {:<21} {:>8} {:>9} {:>10} {:>11} {:>9} {:>9} {:>10} {:>12} {:>11} {:>10}",
        "night",
        "now (02:00 Shanghai)",
        "wall s",
        "peak MiB",
        "contacts",
        "contacts/s",
        "enrolled",
        "queued",
        "queued/s",
        "outbox rows",
        "transitions",
        "store MiB"
    );
    let mut walls = Vec::new();
    let mut peaks = Vec::new();
    if floor {
        save_before_first_night(root);
    }
    let workers = workers.map(|count| count.to_string());
    for night in 0..nights {
        let now = rfc3339(first + TimeDelta::days(i64::try_from(night).unwrap_or(0)));
        let mut args = vec!["run", "--now", &now, "--format", "json"];
        if let Some(workers) = &workers {
            args.extend(["--workers", workers]);
        }
        let measured = measure(meter, root, &args);
        succeeded(&format!("journeyc run --now {now}"), &measured);
        let summary: Json = serde_json::from_str(measured.stdout.trim()).expect("a JSON summary");
        let counts = &summary["counts"];
        // The first night visits every contact (the import touched them
        // all); later ones only those with something due.
        assert!(count(counts, "contacts") <= contacts as u64, "{summary}");
        if night == 0 {
            assert_eq!(count(counts, "contacts"), contacts as u64, "{summary}");
        }
        if night == 0 {
            assert!(
                count(counts, "enrolled") > 0,
                "the first night enrols someone: {summary}"
            );
        }
        let queued = count(counts, "queued");
        let rows = queued
            + count(counts, "skipped")
            + count(counts, "suppressed")
            + count(counts, "expired");
        println!(
            "{:<6} {:<21} {:>8.1} {:>9.1} {:>10} {:>11.0} {:>9} {:>9} {:>10.0} {:>12} {:>11} {:>10.1}",
            night + 1,
            now,
            measured.wall.as_secs_f64(),
            mib(measured.peak_kib),
            count(counts, "contacts"),
            per_second(count(counts, "contacts"), measured.wall),
            count(counts, "enrolled"),
            queued,
            per_second(queued, measured.wall),
            rows,
            count(counts, "transitions"),
            store_mib(root)
        );
        println!(
            "       {}",
            serde_json::to_string(counts).unwrap_or_default()
        );
        walls.push((measured.wall, counts.to_string()));
        peaks.push(measured.peak_kib);
        if floor && night == 0 {
            let floor = measure_floor(root);
            println!(
                "       floor: {:.1} s to read every contact once and write the night's rows set-based ({:.2} = night / floor)",
                floor.as_secs_f64(),
                measured.wall.as_secs_f64() / floor.as_secs_f64().max(1e-9)
            );
        }
    }
    let slowest = walls
        .iter()
        .map(|(wall, _)| *wall)
        .max()
        .unwrap_or_default();
    let peak = peaks.iter().max().copied().unwrap_or_default();
    println!();
    println!(
        "slowest night {:.1} s, highest peak {:.1} MiB over {contacts} contacts; design target: at most 60 s per night over 1,000,000 contacts{}",
        slowest.as_secs_f64(),
        mib(peak),
        if contacts >= 1_000_000 {
            if slowest <= Duration::from_secs(60) {
                " (met)"
            } else {
                " (NOT met)"
            }
        } else {
            " (not measured at this size)"
        }
    );
    walls
}
