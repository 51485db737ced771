//! A Flask app's routes: Werkzeug's `Map` (`url_map._rules_by_endpoint`, each `Rule` with its
//! string, methods, converters and flags) and `view_functions`.
use std::collections::HashMap;

use crate::cpython::objects::{ObjectError, Objects, Result};
use crate::routes::table::{
    Framework, NumberBounds, RouteTable, Rules, View, WerkzeugConverter, WerkzeugMap, WerkzeugRule,
};

pub fn read(o: &Objects, app: u64, found_at: String) -> Result<RouteTable> {
    let url_map = o.own_attr(app, "url_map")?.ok_or_else(|| missing(app, "Flask app without url_map"))?;
    let views = match o.own_attr(app, "view_functions")? {
        Some(d) => o.str_items(d)?.iter().cloned().collect::<HashMap<_, _>>(),
        None => HashMap::new(),
    };
    let host_matching = o.attr_bool(url_map, "host_matching")?.unwrap_or(false);
    let map_strict = o.attr_bool(url_map, "strict_slashes")?.unwrap_or(true);
    let map_merge = o.attr_bool(url_map, "merge_slashes")?.unwrap_or(true);
    // Werkzeug 2.2+ keeps the rules by endpoint (`Map._rules` is a property over it); older
    // versions kept the `_rules` list itself.
    let rule_objs: Vec<u64> = match o.own_attr(url_map, "_rules_by_endpoint")? {
        Some(by_endpoint) => {
            let mut all = Vec::new();
            for (_, rules) in o.str_items(by_endpoint)?.iter().cloned() {
                all.extend(o.sequence(rules)?);
            }
            all
        }
        None => match o.own_attr(url_map, "_rules")? {
            Some(list) => o.sequence(list)?,
            None => return Err(missing(url_map, "werkzeug Map without _rules_by_endpoint or _rules")),
        },
    };
    let mut rules = Vec::with_capacity(rule_objs.len());
    let mut view_cache: HashMap<u64, View> = HashMap::new();
    for r in rule_objs {
        let rule = o.attr_str(r, "rule")?.ok_or_else(|| missing(r, "Rule without a rule string"))?.to_string();
        let endpoint = o.attr_str(r, "endpoint")?.map(|s| s.to_string()).unwrap_or_default();
        // Host matching puts the host in `host`; otherwise a subdomain rule has `subdomain`.
        let domain_attr = if host_matching { "host" } else { "subdomain" };
        let domain = o.attr_str(r, domain_attr)?.map(|s| s.to_string()).unwrap_or_default();
        let redirect_to = o.attr(r, "redirect_to")?.map(|v| o.is_none(v)).transpose()?.is_some_and(|none| !none);
        let methods = super::view::methods(o, o.attr(r, "methods")?)?;
        let mut converters = Vec::new();
        if let Some(d) = o.own_attr(r, "_converters")? {
            for (name, conv) in o.str_items(d)?.iter().cloned() {
                converters.push((name.to_string(), converter(o, conv)?));
            }
        }
        let view = if let Some(&callable) = views.get(endpoint.as_str()) {
            if let Some(v) = view_cache.get(&callable) {
                v.clone()
            } else {
                let v = super::view::of_callable(o, callable)?;
                view_cache.insert(callable, v.clone());
                v
            }
        } else {
            View::default()
        };
        rules.push(WerkzeugRule {
            rule,
            endpoint,
            methods,
            converters,
            strict_slashes: o.attr_bool(r, "strict_slashes")?.unwrap_or(map_strict),
            merge_slashes: o.attr_bool(r, "merge_slashes")?.unwrap_or(map_merge),
            websocket: o.attr_bool(r, "websocket")?.unwrap_or(false),
            build_only: o.attr_bool(r, "build_only")?.unwrap_or(false),
            domain,
            redirect_to,
            view,
        });
    }
    Ok(RouteTable {
        framework: Framework::Flask,
        found_at,
        rules: Rules::Werkzeug(WerkzeugMap { rules, merge_slashes: map_merge }),
        skipped: Vec::new(),
    })
}

fn converter(o: &Objects, conv: u64) -> Result<WerkzeugConverter> {
    let class = o.type_name_of(conv)?.to_string();
    let regex = o.attr_str(conv, "regex")?.map_or_else(|| "[^/]+".into(), |s| s.to_string());
    let weight = match o.attr(conv, "weight")? {
        Some(w) => o.int(w).unwrap_or(100),
        None => 100,
    };
    let part_isolating = o.attr_bool(conv, "part_isolating")?.unwrap_or(true);
    let number = if o.is_instance_of(conv, "NumberConverter")? {
        let num = |name: &str| -> Result<Option<f64>> {
            match o.attr(conv, name)? {
                Some(v) if !o.is_none(v)? => o.number(v).map(Some),
                _ => Ok(None),
            }
        };
        Some(NumberBounds {
            fixed_digits: num("fixed_digits")?.unwrap_or(0.0) as i64,
            min: num("min")?,
            max: num("max")?,
            signed: o.attr_bool(conv, "signed")?.unwrap_or(false),
        })
    } else {
        None
    };
    Ok(WerkzeugConverter { class, regex, weight, part_isolating, number })
}

fn missing(addr: u64, why: &str) -> ObjectError {
    ObjectError::Torn { what: "flask app", addr, why: why.into() }
}
