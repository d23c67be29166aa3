//! Assets to and from CSV, the form spreadsheets and other CMDBs exchange.
//!
//! The columns are the asset's field names, so an export imports back unchanged. A file is
//! imported whole or not at all: a half-imported fleet looks smaller than it is. Never guesses
//! what an unknown column means: it is an error unless its header says `var.NAME`.

use std::collections::BTreeMap;

use super::{Asset, CmdbError, Field, parse_var_name};

/// How a header cell is read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Column {
    Hostname,
    Field(Field),
    Var(String),
}

fn column_of(header: &str) -> Result<Column, String> {
    let lower = header.to_ascii_lowercase();
    if lower == "hostname" || lower == "host" {
        return Ok(Column::Hostname);
    }
    if lower.starts_with("var.") {
        return parse_var_name(&header[4..])
            .map(Column::Var)
            .map_err(|err| err.to_string());
    }
    Field::from_key(&lower).map(Column::Field).ok_or_else(|| {
        let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        format!(
            "unknown column `{header}`: columns are hostname, {}; put anything else in var.NAME columns",
            known.join(", ")
        )
    })
}

/// Reads assets from CSV text with a header row.
///
/// `hostname` is required; every other column is optional and an empty cell leaves the
/// attribute at its default. Lists (`tags`, `data_classes`, `groups`) are separated by `;` (`,`
/// is accepted too, inside a quoted cell). Errors name the line and the column.
pub fn import(source_name: &str, text: &str) -> Result<Vec<Asset>, CmdbError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let fail = |line: u64, column: Option<&str>, reason: String| CmdbError::Csv {
        source_name: source_name.to_owned(),
        line,
        column: column.map(str::to_owned),
        reason,
    };
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(::csv::Trim::Headers)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|err| fail(1, None, err.to_string()))?
        .clone();
    let header_line = headers.position().map_or(1, |p| p.line());
    let mut columns = Vec::with_capacity(headers.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, header) in headers.iter().enumerate() {
        if header.is_empty() {
            return Err(fail(
                header_line,
                None,
                format!("header of column {} is empty", index + 1),
            ));
        }
        let column = column_of(header).map_err(|reason| fail(header_line, Some(header), reason))?;
        let canonical = match &column {
            Column::Hostname => "hostname".to_owned(),
            Column::Field(field) => field.name().to_owned(),
            Column::Var(name) => format!("var.{name}"),
        };
        if let Some(first) = seen.insert(canonical, index) {
            return Err(fail(
                header_line,
                Some(header),
                format!(
                    "column {} repeats column {} ({})",
                    index + 1,
                    first + 1,
                    &headers[first]
                ),
            ));
        }
        columns.push(column);
    }
    let Some(host_index) = columns.iter().position(|c| *c == Column::Hostname) else {
        return Err(fail(
            header_line,
            None,
            "no hostname column: the header must name one".to_owned(),
        ));
    };

    let mut assets = Vec::new();
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|err| {
            let line = err.position().map_or(0, |p| p.line());
            fail(line, None, err.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let column_fail =
            |index: usize, err: CmdbError| fail(line, Some(&headers[index]), err.to_string());
        let hostname = record.get(host_index).unwrap_or_default();
        if hostname.trim().is_empty() {
            return Err(fail(line, Some("hostname"), "empty host name".to_owned()));
        }
        let mut asset = Asset::new(hostname).map_err(|err| column_fail(host_index, err))?;
        for (index, (column, cell)) in columns.iter().zip(record.iter()).enumerate() {
            // A cell this module's export neutralised for spreadsheets reads back as written.
            let cell = crate::text::from_spreadsheet_cell(cell);
            match column {
                Column::Hostname => {}
                Column::Field(field) => asset
                    .set_field(*field, cell)
                    .map_err(|err| column_fail(index, err))?,
                // Var values are kept as written, spaces included; an empty cell means unset.
                Column::Var(name) if !cell.is_empty() => {
                    asset.vars.insert(name.clone(), cell.to_owned());
                }
                Column::Var(_) => {}
            }
        }
        if let Some(first_line) = lines.insert(asset.hostname.clone(), line) {
            return Err(CmdbError::DuplicateHost {
                source_name: source_name.to_owned(),
                hostname: asset.hostname,
                first_line,
                line,
            });
        }
        assets.push(asset);
    }
    Ok(assets)
}

/// Writes assets as CSV: a header row, then one row per asset in the order given.
///
/// The columns are `hostname`, the asset fields in their JSON order, then one `var.NAME` column
/// per variable any asset has, sorted. Lists are joined with `;`. Importing the result gives back
/// the same assets (except variables whose value is empty: an empty cell means unset).
pub fn export<'a>(assets: impl IntoIterator<Item = &'a Asset>) -> String {
    let assets: Vec<&Asset> = assets.into_iter().collect();
    let mut var_names: Vec<&str> = assets
        .iter()
        .flat_map(|asset| asset.vars.keys().map(String::as_str))
        .collect();
    var_names.sort_unstable();
    var_names.dedup();

    let mut out = String::new();
    let mut header = vec!["hostname".to_owned()];
    header.extend(Field::ALL.iter().map(|f| f.name().to_owned()));
    header.extend(var_names.iter().map(|name| format!("var.{name}")));
    write_row(&mut out, header.iter().map(String::as_str));
    for asset in assets {
        let mut row = vec![asset.hostname.clone()];
        row.extend(Field::ALL.iter().map(|f| asset.field_text(*f)));
        row.extend(
            var_names
                .iter()
                .map(|name| asset.vars.get(*name).cloned().unwrap_or_default()),
        );
        write_row(&mut out, row.iter().map(String::as_str));
    }
    out
}

/// One RFC 4180 row; cells with separators, quotes, line breaks or edge spaces are quoted, and
/// cells a spreadsheet would run as formulas are neutralised (`text::spreadsheet_cell`).
fn write_row<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = crate::text::spreadsheet_cell(cell);
        let quote = cell.contains([',', '"', '\n', '\r'])
            || cell.starts_with(char::is_whitespace)
            || cell.ends_with(char::is_whitespace);
        if quote {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        import("hosts.csv", text).unwrap_err().to_string()
    }

    #[test]
    fn imports_fields_and_defaults() {
        let text = "\u{feff}Hostname, env ,criticality,exposure,data_classes,bu,owner,location,tz,tags,groups,os,var.rack\n\
            WEB1.example.com,Prod,5,internet,\"pci,pii\",payments,team-web,aws:eu-west-1,Europe/Dublin,web;frontend,webservers,Debian:12,\" B12 \"\n\
            db1,,,,,,,,,,,,\n";
        let assets = import("hosts.csv", text).unwrap();
        assert_eq!(assets.len(), 2);
        let web = &assets[0];
        assert_eq!(web.hostname, "web1.example.com");
        assert_eq!(web.environment.as_deref(), Some("prod"));
        assert_eq!(web.criticality, 5);
        assert_eq!(web.data_classes.iter().collect::<Vec<_>>(), ["pci", "pii"]);
        assert_eq!(web.tags.iter().collect::<Vec<_>>(), ["frontend", "web"]);
        assert_eq!(web.os.as_ref().unwrap().to_string(), "Debian:12");
        assert_eq!(web.vars["rack"], " B12 ");
        assert_eq!(assets[1], Asset::new("db1").unwrap());
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err("hostname,criticality\nweb1,3\nweb2,9\n");
        assert!(
            e.starts_with("hosts.csv line 3, column criticality: "),
            "{e}"
        );
        assert!(e.contains("1 to 5"), "{e}");

        let e = err("hostname,colour\nweb1,blue\n");
        assert!(
            e.contains("line 1, column colour: unknown column `colour`"),
            "{e}"
        );
        assert!(e.contains("var.NAME"), "{e}");

        let e = err("env\nprod\n");
        assert!(e.contains("no hostname column"), "{e}");

        let e = err("hostname,env,environment\nweb1,a,b\n");
        assert!(e.contains("column 3 repeats column 2 (env)"), "{e}");

        let e = err("hostname,,env\n");
        assert!(e.contains("header of column 2 is empty"), "{e}");

        let e = err("hostname,env\nweb1,prod\nweb2\n");
        assert!(e.starts_with("hosts.csv line 3: "), "{e}");

        let e = err("hostname,env\nweb1,prod\n,dev\n");
        assert!(
            e.contains("line 3, column hostname: empty host name"),
            "{e}"
        );

        let e = err("hostname\nweb_1!\n");
        assert!(e.contains("line 2, column hostname"), "{e}");

        let e = err("hostname,var.9\nweb1,x\n");
        assert!(e.contains("variable name"), "{e}");

        let e = err("hostname,tags\nweb1,\"a b\"\n");
        assert!(e.contains("column tags"), "{e}");
    }

    #[test]
    fn duplicates_name_both_lines() {
        let e = import("hosts.csv", "hostname\nweb1\ndb1\nWEB1\n").unwrap_err();
        assert_eq!(
            e,
            CmdbError::DuplicateHost {
                source_name: "hosts.csv".to_owned(),
                hostname: "web1".to_owned(),
                first_line: 2,
                line: 4,
            }
        );
    }

    #[test]
    fn export_neutralises_formulas_and_round_trips() {
        let mut a = Asset::new("web1").unwrap();
        a.set_pairs([
            "var.note==HYPERLINK(\"http://evil\")",
            "var.dash=-2+3",
            "var.q='x",
        ])
        .unwrap();
        let text = export([&a]);
        assert!(text.contains("'=HYPERLINK"), "{text}");
        assert!(text.contains(",'-2+3") && text.contains(",''x"), "{text}");
        assert_eq!(import("out.csv", &text).unwrap(), vec![a]);
    }

    #[test]
    fn export_round_trips() {
        let mut a = Asset::new("web1").unwrap();
        a.set_pairs([
            "env=prod",
            "tags=web,edge",
            "data=pci",
            "location=on-prem:dc1",
            "var.note=has, commas and \"quotes\"",
            "var.multi=line one\nline two",
        ])
        .unwrap();
        let b = Asset::new("db1").unwrap();
        let text = export([&a, &b]);
        assert!(text.starts_with("hostname,os,environment,criticality,exposure,data_classes,business_unit,owner_group,location,time_zone,tags,groups,var.multi,var.note\n"));
        assert!(text.contains(",edge;web,"), "{text}");
        assert_eq!(import("x.csv", &text).unwrap(), [a, b]);
        assert_eq!(
            export([]),
            "hostname,os,environment,criticality,exposure,data_classes,business_unit,owner_group,location,time_zone,tags,groups\n"
        );
    }
}
