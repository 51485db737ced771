//! A Django project's routes: `settings.ROOT_URLCONF`'s `urlpatterns`, each `URLPattern` with
//! its pattern and callback, each `URLResolver` (`include()`) with its prefix and the patterns of
//! the module or list it includes.
use std::rc::Rc;

use super::RoutesError;
use crate::cpython::objects::{ObjectError, Objects, Result};
use crate::routes::table::{DjangoConverter, DjangoEntry, DjangoPattern, Framework, RouteTable, Rules, Skipped};

/// Nesting of `include()`s followed at most.
const MAX_DEPTH: u32 = 16;

/// The root urlconf's table. `modules` is `sys.modules`.
pub fn read(o: &Objects, modules: &[(Rc<str>, u64)]) -> std::result::Result<RouteTable, RoutesError> {
    let module = |name: &str| modules.iter().find(|(n, _)| &**n == name).map(|(_, m)| *m);
    let conf = module("django.conf").ok_or_else(|| RoutesError::NoApp("django.conf is not imported".into()))?;
    let settings =
        o.module_global(conf, "settings")?.ok_or_else(|| RoutesError::NoApp("no django.conf.settings".into()))?;
    let wrapped = o.own_attr(settings, "_wrapped")?;
    let root = match wrapped {
        Some(w) if o.is_instance_of(w, "Settings")? || o.is_instance_of(w, "UserSettingsHolder")? => {
            o.attr_str(w, "ROOT_URLCONF")?
        }
        _ => None,
    }
    .ok_or_else(|| RoutesError::NoApp("Django settings are not configured yet".into()))?;
    let urlconf = module(&root).ok_or_else(|| {
        RoutesError::NoApp(format!("ROOT_URLCONF {root} is not imported yet (Django imports it at the first request)"))
    })?;
    let patterns = o
        .module_global(urlconf, "urlpatterns")?
        .ok_or_else(|| RoutesError::NoApp(format!("{root} has no urlpatterns")))?;
    let mut skipped = Vec::new();
    let entries = entries(o, patterns, modules, &mut skipped, 0)?;
    Ok(RouteTable {
        framework: Framework::Django,
        found_at: format!("ROOT_URLCONF {root}"),
        rules: Rules::Django(entries),
        skipped,
    })
}

fn entries(
    o: &Objects,
    list: u64,
    modules: &[(Rc<str>, u64)],
    skipped: &mut Vec<Skipped>,
    depth: u32,
) -> Result<Vec<DjangoEntry>> {
    if depth > MAX_DEPTH {
        return Err(ObjectError::TooLarge {
            what: "include() nesting",
            addr: list,
            n: u64::from(depth),
            max: u64::from(MAX_DEPTH),
        });
    }
    let mut out = Vec::new();
    for item in o.sequence(list)? {
        let Some(pattern_obj) = o.own_attr(item, "pattern")? else { continue };
        let pattern = match pattern(o, pattern_obj)? {
            Ok(p) => p,
            Err(reason) => {
                skipped.push(Skipped { rule: o.type_name_of(pattern_obj)?.to_string(), reason });
                continue;
            }
        };
        if o.is_instance_of(item, "URLResolver")? {
            let namespace = o.attr_str(item, "namespace")?.map(|s| s.to_string());
            let Some(list) = included(o, item, modules)? else {
                skipped.push(Skipped {
                    rule: route_text(&pattern),
                    reason: "its included urlconf is not readable".into(),
                });
                continue;
            };
            let children = entries(o, list, modules, skipped, depth + 1)?;
            out.push(DjangoEntry::Resolver { pattern, namespace, children });
        } else if o.is_instance_of(item, "URLPattern")? {
            let view = match o.own_attr(item, "callback")? {
                Some(cb) => super::view::of_callable(o, cb)?,
                None => crate::routes::table::View::default(),
            };
            let name = o.attr_str(item, "name")?.map(|s| s.to_string());
            out.push(DjangoEntry::Pattern { pattern, name, view });
        }
    }
    Ok(out)
}

/// The list an `include()` points at: `urlconf_name` is the module (its `urlpatterns`), the list
/// itself, or a dotted name.
fn included(o: &Objects, resolver: u64, modules: &[(Rc<str>, u64)]) -> Result<Option<u64>> {
    let Some(conf) = o.own_attr(resolver, "urlconf_name")? else { return Ok(None) };
    let module = if o.is_instance_of(conf, "module")? {
        conf
    } else if o.is_instance_of(conf, "list")? || o.is_instance_of(conf, "tuple")? {
        return Ok(Some(conf));
    } else if let Ok(name) = o.str(conf) {
        match modules.iter().find(|(n, _)| **n == *name) {
            Some((_, m)) => *m,
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    o.module_global(module, "urlpatterns")
}

/// A pattern, or why it cannot be matched here.
fn pattern(o: &Objects, p: u64) -> Result<std::result::Result<DjangoPattern, String>> {
    let is_endpoint = o.attr_bool(p, "_is_endpoint")?.unwrap_or(false);
    if o.is_instance_of(p, "RoutePattern")? {
        let Some(route) = o.attr_str(p, "_route")? else {
            return Ok(Err("a path() whose route is not a str (a lazy translation?)".into()));
        };
        let mut converters = Vec::new();
        if let Some(d) = o.own_attr(p, "converters")? {
            for (name, conv) in o.str_items(d)?.iter().cloned() {
                let class = o.type_name_of(conv)?.to_string();
                let Some(regex) = o.attr_str(conv, "regex")? else {
                    return Ok(Err(format!("converter {class} has no regex")));
                };
                converters.push((name.to_string(), DjangoConverter { class, regex: regex.to_string() }));
            }
        }
        return Ok(Ok(DjangoPattern::Route { route: route.to_string(), converters, is_endpoint }));
    }
    if o.is_instance_of(p, "RegexPattern")? {
        return Ok(match o.attr_str(p, "_regex")? {
            Some(regex) => Ok(DjangoPattern::Regex { regex: regex.to_string(), is_endpoint }),
            None => Err("a re_path() whose regex is not a str (a lazy translation?)".into()),
        });
    }
    Ok(Err(format!("{} patterns (i18n prefixes) are not matched", o.type_name_of(p)?)))
}

fn route_text(p: &DjangoPattern) -> String {
    match p {
        DjangoPattern::Route { route, .. } => route.clone(),
        DjangoPattern::Regex { regex, .. } => regex.clone(),
    }
}
