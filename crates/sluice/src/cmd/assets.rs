//! `sluice assets …`: the server's CMDB from the command line. Tables for people, JSON and CSV
//! for scripts. Parsing, validation and selection happen on the server (with `sluice-core`);
//! this module reads files, sends them and formats answers. Changes carry an Idempotency-Key,
//! so the one automatic retry after a lost connection never applies a change twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::Value;
use sluice_core::cmdb::Asset;
use sluice_protocol::assets::{
    AssetPage, AssetPatch, ImportFormat as WireFormat, ImportRequest, ImportResult,
};

use super::client::{Client, ServerArgs, print_table};

/// The file formats `sluice assets import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// From the file name (`.csv`, `.ini`, `.yml`/`.yaml`), else from the content.
    Auto,
    /// CSV with a header row naming `hostname`.
    Csv,
    /// An Ansible INI inventory.
    AnsibleIni,
    /// An Ansible YAML inventory.
    AnsibleYaml,
}

impl ImportFormat {
    /// The name the API takes, `auto` resolved from the extension when it tells.
    #[cfg(test)]
    fn api_name(self, file: &Path) -> &'static str {
        match self.api_format(file) {
            WireFormat::Csv => "csv",
            WireFormat::AnsibleIni => "ansible-ini",
            WireFormat::AnsibleYaml => "ansible-yaml",
            WireFormat::Auto => "auto",
        }
    }

    /// The format the API takes, `auto` resolved from the extension when it tells.
    fn api_format(self, file: &Path) -> WireFormat {
        let extension = file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match (self, extension.as_deref()) {
            (Self::Csv, _) | (Self::Auto, Some("csv")) => WireFormat::Csv,
            (Self::AnsibleIni, _) | (Self::Auto, Some("ini" | "cfg")) => WireFormat::AnsibleIni,
            (Self::AnsibleYaml, _) | (Self::Auto, Some("yml" | "yaml")) => WireFormat::AnsibleYaml,
            (Self::Auto, _) => WireFormat::Auto,
        }
    }
}

/// Output of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListOutput {
    /// Columns for people.
    Table,
    /// A JSON array of asset records.
    Json,
    /// CSV, as `sluice assets import` reads back.
    Csv,
}

/// Output of single records and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Text for people.
    Table,
    /// JSON.
    Json,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// CSV (imports back unchanged).
    Csv,
    /// A JSON array of asset records.
    Json,
}

/// Subcommands of `sluice assets`.
#[derive(Debug, clap::Subcommand)]
pub enum AssetsCommand {
    /// Import assets from CSV or an Ansible inventory (INI or YAML): the whole file or nothing.
    /// Assets the file does not name are left as they are.
    Import {
        #[command(flatten)]
        server: ServerArgs,
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Its format.
        #[arg(long, value_enum, default_value = "auto")]
        format: ImportFormat,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List assets, all or those a selector picks (`env=prod,criticality>=4`).
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only the assets this selector picks (see docs/cmdb.md).
        #[arg(long, short = 's', value_name = "SELECTOR")]
        selector: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: ListOutput,
    },
    /// Show one asset.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Host name.
        host: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Set attributes: `key=value …`, all of them or, if any is wrong, none.
    Set {
        #[command(flatten)]
        server: ServerArgs,
        /// Host name.
        host: String,
        /// `key=value` pairs: criticality=5 tags=web,edge env= var.rack=r12 …
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Output format of the updated asset.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Export assets as CSV or JSON, on standard output.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// Format.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Only the assets this selector picks.
        #[arg(long, short = 's', value_name = "SELECTOR")]
        selector: Option<String>,
    },
    /// Delete an asset (refused while a service lists it).
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        /// Host name.
        host: String,
    },
}

/// Runs `sluice assets …`.
pub fn run(command: AssetsCommand) -> Result<ExitCode> {
    match command {
        AssetsCommand::Import {
            server,
            file,
            format,
            output,
        } => import(&server, &file, format, output),
        AssetsCommand::List {
            server,
            selector,
            output,
        } => list(&server, selector.as_deref(), output),
        AssetsCommand::Show {
            server,
            host,
            output,
        } => {
            let asset: Asset = Client::new(&server)?.get_as(&asset_path(&host))?;
            print_asset(&asset, output)
        }
        AssetsCommand::Set {
            server,
            host,
            pairs,
            output,
        } => {
            let mut set = BTreeMap::new();
            for pair in &pairs {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("expected KEY=VALUE, got {pair:?}"))?;
                set.insert(key.trim().to_owned(), Value::String(value.to_owned()));
            }
            let asset: Asset = Client::new(&server)?.call_idempotent(
                Method::PATCH,
                &asset_path(&host),
                Some(&AssetPatch { set }),
            )?;
            print_asset(&asset, output)
        }
        AssetsCommand::Export {
            server,
            format,
            selector,
        } => {
            let format = match format {
                ExportFormat::Csv => "csv",
                ExportFormat::Json => "json",
            };
            export(&server, format, selector.as_deref())
        }
        AssetsCommand::Delete { server, host } => {
            Client::new(&server)?.send_idempotent(Method::DELETE, &asset_path(&host), None)?;
            eprintln!("deleted {host}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn asset_path(host: &str) -> String {
    format!("/api/v1/assets/{}", encode(host))
}

fn import(
    server: &ServerArgs,
    file: &Path,
    format: ImportFormat,
    output: Output,
) -> Result<ExitCode> {
    let (content, name) = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        (text, "stdin".to_owned())
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        (text, name)
    };
    let body = ImportRequest {
        format: format.api_format(file),
        content,
        source_name: Some(name.clone()),
    };
    let client = Client::new(server)?;
    if output == Output::Json {
        let summary = client.send_idempotent(
            Method::POST,
            "/api/v1/assets/import",
            Some(&serde_json::to_value(&body)?),
        )?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    let summary: ImportResult =
        client.call_idempotent(Method::POST, "/api/v1/assets/import", Some(&body))?;
    let mut line = format!(
        "imported {name} ({}): {} assets: {} created, {} updated, {} unchanged",
        text(&serde_json::to_value(summary.format)?),
        summary.assets,
        summary.created,
        summary.updated,
        summary.unchanged,
    );
    if summary.groups_created + summary.groups_updated > 0 {
        line.push_str(&format!(
            "; groups: {} created, {} updated",
            summary.groups_created, summary.groups_updated
        ));
    }
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn selector_query(selector: Option<&str>) -> String {
    selector
        .map(|s| format!("&selector={}", encode(s)))
        .unwrap_or_default()
}

fn list(server: &ServerArgs, selector: Option<&str>, output: ListOutput) -> Result<ExitCode> {
    if output == ListOutput::Csv {
        return export(server, "csv", selector);
    }
    let client = Client::new(server)?;
    let mut assets = Vec::new();
    loop {
        let page: AssetPage = client.get_as(&format!(
            "/api/v1/assets?limit=1000&offset={}{}",
            assets.len(),
            selector_query(selector)
        ))?;
        let empty = page.items.is_empty();
        assets.extend(page.items);
        if empty || assets.len() >= page.total {
            break;
        }
    }
    if output == ListOutput::Json {
        // Through `Value`, as the server's answer was printed: keys sorted.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&assets)?)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = assets
        .iter()
        .map(|a| {
            let list = |set: &BTreeSet<String>| {
                if set.is_empty() {
                    "-".to_owned()
                } else {
                    set.iter().cloned().collect::<Vec<_>>().join(",")
                }
            };
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            Ok(vec![
                a.hostname.clone(),
                or_dash(a.os.as_ref().map(ToString::to_string)),
                or_dash(a.environment.clone()),
                a.criticality.to_string(),
                text(&serde_json::to_value(a.exposure)?),
                or_dash(a.owner_group.clone()),
                or_dash(a.location.as_ref().map(ToString::to_string)),
                list(&a.groups),
                list(&a.tags),
            ])
        })
        .collect::<Result<_>>()?;
    print_table(
        &[
            "HOST", "OS", "ENV", "CRIT", "EXPOSURE", "OWNER", "LOCATION", "GROUPS", "TAGS",
        ],
        &rows,
    );
    eprintln!(
        "{} asset{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

fn export(server: &ServerArgs, format: &str, selector: Option<&str>) -> Result<ExitCode> {
    let text = Client::new(server)?.get_text(&format!(
        "/api/v1/assets/export?format={format}{}",
        selector_query(selector)
    ))?;
    if format == "json" {
        let value: Value =
            serde_json::from_str(&text).context("the server's export is not valid JSON")?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_asset(asset: &Asset, output: Output) -> Result<ExitCode> {
    // Every field as the record writes it: the typed asset, shown through its own form.
    let asset = serde_json::to_value(asset)?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&asset)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(fields) = asset.as_object() else {
        bail!("an asset is not a JSON object: {asset}");
    };
    // The record's own order (the JSON map comes back sorted), then anything newer, then vars.
    const ORDER: [&str; 12] = [
        "hostname",
        "os",
        "environment",
        "criticality",
        "exposure",
        "data_classes",
        "business_unit",
        "owner_group",
        "location",
        "time_zone",
        "tags",
        "groups",
    ];
    let mut keys: Vec<&str> = ORDER
        .iter()
        .copied()
        .filter(|key| fields.contains_key(*key))
        .collect();
    keys.extend(
        fields
            .keys()
            .map(String::as_str)
            .filter(|key| *key != "vars" && !ORDER.contains(key)),
    );
    let mut rows: Vec<(String, String)> = keys
        .into_iter()
        .map(|key| (key.to_owned(), text(&fields[key])))
        .collect();
    if let Some(vars) = asset["vars"].as_object() {
        rows.extend(
            vars.iter()
                .map(|(name, value)| (format!("var.{name}"), text(value))),
        );
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON value as a table cell: text as is, lists joined with `,`, nothing as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Percent-encodes everything but unreserved characters, for paths and query values.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_survive_the_query_string() {
        assert_eq!(
            encode("env=prod,criticality>=4|5 x"),
            "env%3Dprod%2Ccriticality%3E%3D4%7C5%20x"
        );
        assert_eq!(encode("web1.example.com"), "web1.example.com");
    }

    #[test]
    fn auto_uses_the_extension_when_it_tells() {
        let auto = ImportFormat::Auto;
        assert_eq!(auto.api_name(Path::new("hosts.CSV")), "csv");
        assert_eq!(auto.api_name(Path::new("prod.ini")), "ansible-ini");
        assert_eq!(auto.api_name(Path::new("stg.yml")), "ansible-yaml");
        assert_eq!(auto.api_name(Path::new("inventory/production")), "auto");
        assert_eq!(
            ImportFormat::Csv.api_name(Path::new("x.yml")),
            "csv",
            "an explicit format wins"
        );
    }

    #[test]
    fn cells() {
        assert_eq!(text(&json!(["a", "b"])), "a,b");
        assert_eq!(text(&json!([])), "-");
        assert_eq!(text(&Value::Null), "-");
        assert_eq!(text(&json!(4)), "4");
    }
}
