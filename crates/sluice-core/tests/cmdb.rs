//! CMDB end to end on realistic inputs: Ansible inventories and a CSV export from another
//! CMDB, selectors over the result, and a property test of selectors and CSV round trips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use sluice_core::asset::Exposure;
use sluice_core::cmdb::ansible::{self, Inventory, InventoryFormat};
use sluice_core::cmdb::{Asset, CmdbError, Selector, csv};

const PRODUCTION_INI: &str = include_str!("fixtures/cmdb/production.ini");
const STAGING_YML: &str = include_str!("fixtures/cmdb/staging.yml");
const INVALID_INI: &str = include_str!("fixtures/cmdb/invalid_criticality.ini");
const ASSETS_CSV: &str = include_str!("fixtures/cmdb/assets.csv");

fn host<'i>(inventory: &'i Inventory, name: &str) -> &'i Asset {
    inventory
        .assets
        .iter()
        .find(|a| a.hostname == name)
        .unwrap_or_else(|| panic!("no host {name}"))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn names<'a>(assets: impl Iterator<Item = &'a Asset>) -> Vec<&'a str> {
    assets.map(|a| a.hostname.as_str()).collect()
}

fn production() -> Inventory {
    assert_eq!(ansible::detect_format(PRODUCTION_INI), InventoryFormat::Ini);
    ansible::parse("production.ini", PRODUCTION_INI).unwrap()
}

fn staging() -> Inventory {
    assert_eq!(ansible::detect_format(STAGING_YML), InventoryFormat::Yaml);
    ansible::parse("staging.yml", STAGING_YML).unwrap()
}

#[test]
fn ini_inventory_groups() {
    let inv = production();
    assert_eq!(inv.assets.len(), 13);
    assert_eq!(
        inv.groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        [
            "appservers",
            "backend",
            "bastion",
            "dbservers",
            "frontend",
            "loadbalancers",
            "monitoring",
            "payments",
            "webservers"
        ]
    );
    assert_eq!(
        host(&inv, "web03.dub.example.com").groups,
        set(&["frontend", "payments", "webservers"])
    );
    assert_eq!(
        host(&inv, "db02.dub.example.com").groups,
        set(&["backend", "dbservers", "payments"])
    );
    assert_eq!(
        host(&inv, "lb02.dub.example.com").groups,
        set(&["frontend", "loadbalancers", "payments"])
    );
    assert_eq!(
        host(&inv, "bastion01.dub.example.com").groups,
        set(&["bastion"])
    );
}

#[test]
fn ini_inventory_attributes_follow_precedence() {
    let inv = production();

    let web = host(&inv, "web01.dub.example.com");
    assert_eq!(web.environment.as_deref(), Some("prod"));
    assert_eq!(web.criticality, 4, "from payments");
    assert_eq!(web.exposure, Exposure::Internet, "from frontend");
    assert_eq!(web.tags, set(&["web"]));
    assert_eq!(web.data_classes, set(&["pci", "pii"]));
    assert_eq!(web.owner_group.as_deref(), Some("team-payments"));
    assert_eq!(web.business_unit.as_deref(), Some("payments"), "from all");
    assert_eq!(web.location.as_ref().unwrap().to_string(), "on-prem:dub1");
    assert_eq!(web.time_zone.as_deref(), Some("Europe/Dublin"));
    assert_eq!(web.os.as_ref().unwrap().to_string(), "Debian:12");
    assert_eq!(
        web.vars,
        BTreeMap::from([
            (
                "ansible_python_interpreter".to_owned(),
                "/usr/bin/python3".to_owned()
            ),
            ("ansible_user".to_owned(), "deploy".to_owned()),
        ])
    );

    let canary = host(&inv, "web05.dub.example.com");
    assert_eq!(canary.criticality, 5, "host over group");
    assert_eq!(
        canary.tags,
        set(&["canary", "web"]),
        "host tags replace group tags"
    );
    assert_eq!(canary.vars["ansible_host"], "10.10.1.5");

    let db = host(&inv, "db01.dub.example.com");
    assert_eq!(db.criticality, 5, "dbservers is deeper than payments");
    assert_eq!(db.data_classes, set(&["phi", "pci", "pii"]));
    assert_eq!(db.exposure, Exposure::Internal);
    assert_eq!(db.vars["role"], "primary");
    assert_eq!(db.vars["ansible_become"], "true");
    assert_eq!(db.vars["backup_window"], "02:00-04:00");

    assert_eq!(
        host(&inv, "app02.dub.example.com").vars["ansible_port"],
        "2222"
    );

    let bastion = host(&inv, "bastion01.dub.example.com");
    assert_eq!(bastion.exposure, Exposure::Internet);
    assert_eq!(
        (bastion.criticality, bastion.environment.as_deref()),
        (3, None)
    );

    let mon = host(&inv, "mon01.fra.example.com");
    assert_eq!(mon.os.as_ref().unwrap().to_string(), "Ubuntu:22.04");
    assert_eq!(mon.location.as_ref().unwrap().to_string(), "on-prem:fra1");
    assert_eq!(mon.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(mon.owner_group.as_deref(), Some("team-sre"));
    for asset in &inv.assets {
        asset.validate().unwrap();
    }
}

#[test]
fn yaml_inventory() {
    let inv = staging();
    assert_eq!(inv.assets.len(), 12);
    assert_eq!(
        inv.groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        [
            "databases",
            "k8s",
            "k8s_control",
            "k8s_workers",
            "legacy_db"
        ]
    );

    let jump = host(&inv, "jump.stg.example.com");
    assert!(jump.groups.is_empty());
    assert_eq!(jump.exposure, Exposure::Internet);
    assert_eq!(jump.environment.as_deref(), Some("staging"));
    let ntp: serde_json::Value = serde_json::from_str(&jump.vars["ntp_servers"]).unwrap();
    assert_eq!(ntp, serde_json::json!(["0.pool.ntp.org", "1.pool.ntp.org"]));

    let cp = host(&inv, "cp2.stg.example.com");
    assert_eq!(cp.groups, set(&["k8s", "k8s_control"]));
    assert_eq!(cp.criticality, 4);
    assert_eq!(cp.os.as_ref().unwrap().to_string(), "Ubuntu:24.04");
    assert_eq!(cp.location.as_ref().unwrap().to_string(), "aws:us-east-1");
    assert_eq!(cp.tags, set(&["kubernetes"]));
    assert_eq!(cp.business_unit.as_deref(), Some("retail"));
    assert_eq!(cp.time_zone.as_deref(), Some("America/New_York"));

    let worker = host(&inv, "workerc.stg.example.com");
    assert_eq!(worker.criticality, 2);
    let kubelet: serde_json::Value = serde_json::from_str(&worker.vars["kubelet_args"]).unwrap();
    assert_eq!(
        kubelet,
        serde_json::json!({"max-pods": 110, "eviction-hard": "memory.available<500Mi"})
    );
    let spot = host(&inv, "workerz.stg.example.com");
    assert_eq!(
        (spot.criticality, &spot.tags),
        (1, &set(&["kubernetes", "spot"]))
    );

    let pg = host(&inv, "pg1.stg.example.com");
    assert_eq!(pg.groups, set(&["databases"]));
    assert_eq!((pg.criticality, &pg.data_classes), (5, &set(&["pii"])));
    assert_eq!(pg.os.as_ref().unwrap().to_string(), "AlmaLinux:9");
    assert_eq!(pg.vars["pg_role"], "primary");

    let oracle = host(&inv, "oracle1.stg.example.com");
    assert_eq!(oracle.groups, set(&["databases", "legacy_db"]));
    assert_eq!(oracle.criticality, 3, "child group over parent");
    assert_eq!(oracle.os.as_ref().unwrap().to_string(), "Red Hat:8");
    assert_eq!(oracle.owner_group.as_deref(), Some("team-dba"));
}

#[test]
fn invalid_inventory_names_host_variable_and_line() {
    let err = ansible::parse("invalid_criticality.ini", INVALID_INI).unwrap_err();
    assert_eq!(
        err,
        CmdbError::InventoryVar {
            source_name: "invalid_criticality.ini".to_owned(),
            host: "web1.example.com".to_owned(),
            var: "criticality".to_owned(),
            origin: "group web (line 8)".to_owned(),
            reason: "criticality: \"9\" is not a whole number from 1 to 5".to_owned(),
        }
    );
}

#[test]
fn selectors_over_inventories() {
    let inv = production();
    let pick = |text: &str| names(Selector::parse(text).unwrap().filter(&inv.assets));
    assert_eq!(
        pick("group=payments,criticality>=5"),
        [
            "db01.dub.example.com",
            "db02.dub.example.com",
            "web05.dub.example.com"
        ]
    );
    assert_eq!(
        pick("exposure=internet,group!=payments"),
        ["bastion01.dub.example.com"]
    );
    assert_eq!(
        pick("data=phi"),
        ["db01.dub.example.com", "db02.dub.example.com"]
    );
    assert_eq!(
        pick("host=web0?.dub.*,tag=canary"),
        ["web05.dub.example.com"]
    );
    assert_eq!(pick("location=on-prem:fra*"), ["mon01.fra.example.com"]);
    assert_eq!(pick("os=Ubuntu:*"), ["mon01.fra.example.com"]);
    assert_eq!(
        pick("var.role=primary|replica"),
        ["db01.dub.example.com", "db02.dub.example.com"]
    );
    assert_eq!(pick("").len(), 13);
    assert_eq!(pick("env=prod").len(), 12);
    assert_eq!(pick("tz=Europe/*").len(), 13);
    assert_eq!(
        pick("owner=team-payments,bu=payments,location=on-prem").len(),
        11
    );
}

#[test]
fn csv_import_export_round_trip() {
    let assets = csv::import("assets.csv", ASSETS_CSV).unwrap();
    assert_eq!(assets.len(), 5);
    let db = &assets[2];
    assert_eq!(db.data_classes, set(&["pci", "pii"]));
    assert_eq!(db.vars["contact"], "DBA team, 24/7");
    assert_eq!(db.vars["rack"], "B12");
    let legacy = &assets[4];
    assert_eq!(
        (legacy.criticality, legacy.exposure),
        (3, Exposure::Isolated)
    );
    assert_eq!(assets[0].tags, set(&["canary", "web"]));

    let exported = csv::export(&assets);
    assert_eq!(csv::import("export.csv", &exported).unwrap(), assets);
    assert_eq!(
        csv::export(&csv::import("export.csv", &exported).unwrap()),
        exported
    );
}

#[test]
fn inventories_survive_csv_and_json() {
    for inv in [production(), staging()] {
        let exported = csv::export(&inv.assets);
        assert_eq!(csv::import("export.csv", &exported).unwrap(), inv.assets);
        let json = serde_json::to_string(&inv.assets).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<Asset>>(&json).unwrap(),
            inv.assets
        );
    }
}

/// SplitMix64: small, deterministic, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn subset(&mut self, items: &[&str]) -> Vec<String> {
        items
            .iter()
            .filter(|_| self.chance(40))
            .map(|s| (*s).to_owned())
            .collect()
    }
}

const HOSTS: &[&str] = &["web", "db", "app-", "cache_", "lb"];
const ENVS: &[&str] = &["dev", "test", "staging", "prod"];
const UNITS: &[&str] = &["payments", "retail", "Payments"];
const OWNERS: &[&str] = &["team-web", "team-dba", "sre"];
const TAGS: &[&str] = &["web", "db", "edge", "canary"];
const GROUPS: &[&str] = &["webservers", "dbservers", "prod", "Legacy"];
const DATA: &[&str] = &["pci", "pii", "phi"];
const OSES: &[&str] = &[
    "Debian:12",
    "Debian:11",
    "Ubuntu:22.04",
    "AlmaLinux:9",
    "Rocky Linux:9",
];
const LOCATIONS: &[&str] = &[
    "on-prem",
    "on-prem:dc1",
    "aws:eu-west-1",
    "aws:us-east-1",
    "gcp:europe-west1",
];
const ZONES: &[&str] = &["UTC", "Europe/Paris", "Europe/Dublin", "America/New_York"];
const EXPOSURES: &[&str] = &["internet", "internal", "isolated"];
const RACKS: &[&str] = &["a1", "b2", "b 3"];

fn random_asset(rng: &mut Rng, n: usize) -> Asset {
    let domain = if rng.chance(50) { ".example.com" } else { "" };
    let mut asset = Asset::new(&format!("{}{n}{domain}", rng.pick(HOSTS))).unwrap();
    let mut pairs: Vec<String> = Vec::new();
    let mut maybe = |rng: &mut Rng, key: &str, pool: &[&str]| {
        if rng.chance(70) {
            pairs.push(format!("{key}={}", rng.pick(pool)));
        }
    };
    maybe(rng, "env", ENVS);
    maybe(rng, "bu", UNITS);
    maybe(rng, "owner", OWNERS);
    maybe(rng, "os", OSES);
    maybe(rng, "location", LOCATIONS);
    maybe(rng, "tz", ZONES);
    maybe(rng, "exposure", EXPOSURES);
    maybe(rng, "var.rack", RACKS);
    maybe(rng, "var.role", &["primary", "replica"]);
    pairs.push(format!("criticality={}", 1 + rng.below(5)));
    pairs.push(format!("tags={}", rng.subset(TAGS).join(",")));
    pairs.push(format!("groups={}", rng.subset(GROUPS).join(";")));
    pairs.push(format!("data={}", rng.subset(DATA).join(",")));
    asset.set_pairs(pairs.iter().map(String::as_str)).unwrap();
    asset
}

/// A term as the generator wrote it, evaluated without the library's parser.
#[derive(Debug)]
struct TermSpec {
    key: &'static str,
    op: &'static str,
    values: Vec<String>,
}

fn random_term(rng: &mut Rng) -> (String, TermSpec) {
    let with_globs = |rng: &mut Rng, pool: &[&str], globs: &[&str]| -> Vec<String> {
        let count = 1 + rng.below(3);
        (0..count)
            .map(|_| {
                if rng.chance(25) {
                    rng.pick(globs).to_owned()
                } else {
                    rng.pick(pool).to_owned()
                }
            })
            .collect()
    };
    let (key, aliases, values): (&str, &[&str], Vec<String>) = match rng.below(13) {
        0 => (
            "host",
            &["host", "hostname"],
            with_globs(
                rng,
                &["web1", "db2.example.com"],
                &["web*", "*.example.com", "d?2*", "*"],
            ),
        ),
        1 => (
            "env",
            &["env", "environment", "ENV"],
            with_globs(rng, ENVS, &["*", "d*", "pro?"]),
        ),
        2 => (
            "bu",
            &["bu", "business_unit"],
            with_globs(rng, UNITS, &["pay*", "*"]),
        ),
        3 => (
            "owner",
            &["owner", "owner_group"],
            with_globs(rng, OWNERS, &["team-*"]),
        ),
        4 => (
            "tag",
            &["tag", "tags"],
            with_globs(rng, TAGS, &["*e*", "?b"]),
        ),
        5 => (
            "group",
            &["group", "groups"],
            with_globs(rng, GROUPS, &["*servers", "L*"]),
        ),
        6 => (
            "data",
            &["data", "data_classes"],
            with_globs(rng, DATA, &["p?i", "*"]),
        ),
        7 => (
            "os",
            &["os"],
            with_globs(rng, OSES, &["Debian:*", "*:9", "Rocky Linux:*"]),
        ),
        8 => (
            "exposure",
            &["exposure"],
            with_globs(rng, EXPOSURES, &["internet"]),
        ),
        9 => (
            "location",
            &["location"],
            with_globs(rng, LOCATIONS, &["aws", "on-prem", "aws:*", "*:dc?", "gcp"]),
        ),
        10 => (
            "tz",
            &["tz", "time_zone"],
            with_globs(rng, ZONES, &["Europe/*", "*"]),
        ),
        11 => (
            "criticality",
            &["criticality"],
            with_globs(rng, &["1", "2", "3", "4", "5"], &["3"]),
        ),
        _ => {
            let name = rng.pick(&["rack", "role"]);
            let key: &'static str = if name == "rack" {
                "var.rack"
            } else {
                "var.role"
            };
            let values = with_globs(
                rng,
                &["a1", "b2", "b 3", "primary", "replica"],
                &["b*", "*"],
            );
            let alias: &'static [&'static str] = if name == "rack" {
                &["var.rack"]
            } else {
                &["var.role"]
            };
            (key, alias, values)
        }
    };
    let op = if key == "criticality" && rng.chance(60) {
        rng.pick(&[">=", "<=", ">", "<"])
    } else if rng.chance(30) {
        "!="
    } else {
        "="
    };
    let values = if op.starts_with(['<', '>']) {
        vec![(1 + rng.below(5)).to_string()]
    } else {
        values
    };
    let written_values: Vec<String> = values
        .iter()
        .map(|v| {
            // Keys stored in lower case accept any case in selectors.
            if matches!(key, "env" | "tag" | "data" | "host") && rng.chance(20) {
                v.to_ascii_uppercase()
            } else {
                v.clone()
            }
        })
        .collect();
    let pad = |rng: &mut Rng| if rng.chance(20) { " " } else { "" };
    let text = format!(
        "{}{}{}{}{}{}",
        pad(rng),
        rng.pick(aliases),
        pad(rng),
        op,
        pad(rng),
        written_values.join("|")
    );
    let op: &'static str = match op {
        "=" => "=",
        "!=" => "!=",
        ">=" => ">=",
        "<=" => "<=",
        ">" => ">",
        _ => "<",
    };
    let key: &'static str = match key {
        "host" => "host",
        "env" => "env",
        "bu" => "bu",
        "owner" => "owner",
        "tag" => "tag",
        "group" => "group",
        "data" => "data",
        "os" => "os",
        "exposure" => "exposure",
        "location" => "location",
        "tz" => "tz",
        "criticality" => "criticality",
        "var.rack" => "var.rack",
        _ => "var.role",
    };
    (
        text,
        TermSpec {
            key,
            op,
            values: written_values,
        },
    )
}

/// Straightforward glob, written recursively (the library's is iterative).
fn reference_glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => {
            reference_glob(rest, text) || (!text.is_empty() && reference_glob(pattern, &text[1..]))
        }
        Some(('?', rest)) => !text.is_empty() && reference_glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && reference_glob(rest, &text[1..]),
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    reference_glob(&p, &t)
}

fn reference_matches(terms: &[TermSpec], asset: &Asset) -> bool {
    terms.iter().all(|term| {
        let crit = asset.criticality;
        let bound = || term.values[0].parse::<u8>().unwrap();
        match term.op {
            ">=" => return crit >= bound(),
            "<=" => return crit <= bound(),
            ">" => return crit > bound(),
            "<" => return crit < bound(),
            _ => {}
        }
        let lower = matches!(term.key, "env" | "tag" | "data" | "host");
        let any = term.values.iter().any(|value| {
            let value = if lower {
                value.to_ascii_lowercase()
            } else {
                value.clone()
            };
            let value = value.as_str();
            let single: Option<String> = match term.key {
                "host" => Some(asset.hostname.clone()),
                "env" => asset.environment.clone(),
                "bu" => asset.business_unit.clone(),
                "owner" => asset.owner_group.clone(),
                "os" => asset.os.as_ref().map(ToString::to_string),
                "exposure" => Some(asset.exposure.to_string()),
                "tz" => asset.time_zone.clone(),
                "criticality" => Some(crit.to_string()),
                "var.rack" => asset.vars.get("rack").cloned(),
                "var.role" => asset.vars.get("role").cloned(),
                "location" => {
                    return asset.location.as_ref().is_some_and(|l| {
                        let text = l.to_string();
                        glob(value, &text)
                            || (!value.contains([':', '*', '?'])
                                && text.split(':').next() == Some(value))
                    });
                }
                _ => None,
            };
            let many = match term.key {
                "tag" => Some(&asset.tags),
                "group" => Some(&asset.groups),
                "data" => Some(&asset.data_classes),
                _ => None,
            };
            match many {
                Some(items) => items.iter().any(|item| glob(value, item)),
                None => single.is_some_and(|s| glob(value, &s)),
            }
        });
        if term.op == "!=" { !any } else { any }
    })
}

#[test]
fn property_selectors_round_trip_and_agree_with_reference() {
    let mut rng = Rng(0x5EED_C0DE);
    let assets: Vec<Asset> = (0..60).map(|n| random_asset(&mut rng, n)).collect();
    let mut matched_some = 0;
    for _ in 0..3000 {
        let count = rng.below(4);
        let (texts, specs): (Vec<String>, Vec<TermSpec>) =
            (0..count).map(|_| random_term(&mut rng)).unzip();
        let text = texts.join(",");
        let selector = Selector::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let canonical = selector.to_string();
        assert_eq!(
            Selector::parse(&canonical).unwrap(),
            selector,
            "{text} -> {canonical}"
        );
        assert_eq!(Selector::parse(&canonical).unwrap().to_string(), canonical);
        assert_eq!(selector.terms().len(), count);
        for asset in &assets {
            assert_eq!(
                selector.matches(asset),
                reference_matches(&specs, asset),
                "selector {text} (canonical {canonical}) on {asset:?}"
            );
        }
        let filtered = selector.filter(&assets).count();
        let expected = assets
            .iter()
            .filter(|a| reference_matches(&specs, a))
            .count();
        assert_eq!(filtered, expected);
        if filtered > 0 && filtered < assets.len() {
            matched_some += 1;
        }
    }
    assert!(
        matched_some > 500,
        "the generator should discriminate: {matched_some}"
    );
}

#[test]
fn property_random_assets_round_trip_through_csv_and_json() {
    let mut rng = Rng(42);
    for round in 0..50 {
        let assets: Vec<Asset> = (0..1 + rng.below(20))
            .map(|n| random_asset(&mut rng, round * 100 + n))
            .collect();
        let text = csv::export(&assets);
        assert_eq!(csv::import("random.csv", &text).unwrap(), assets, "{text}");
        let json = serde_json::to_string(&assets).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Asset>>(&json).unwrap(), assets);
        for asset in &assets {
            asset.validate().unwrap();
        }
    }
}
