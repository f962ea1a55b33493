//! The explicit plugin registry (kubelet's `VolumePluginMgr`): built once, injected, never global.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::plugin::VolumePlugin;
use crate::spec::VolumeSpec;

/// Plugins that come and go while the agent runs (FlexVolume drivers found by probing the plugin
/// directory, kubelet's `DynamicPluginProber`). The registry asks for the current set at every lookup, so
/// a source must answer from memory.
pub trait PluginSource: Send + Sync {
    /// The plugins usable now.
    fn plugins(&self) -> Vec<Arc<dyn VolumePlugin>>;
}

/// Plugins by name: the static ones registered at start, then those of the dynamic sources. Lookup by spec
/// fails on zero or several matches, as kubelet's `FindPluginBySpec` does.
#[derive(Default, Clone)]
pub struct PluginRegistry {
    plugins: Vec<Arc<dyn VolumePlugin>>,
    sources: Vec<Arc<dyn PluginSource>>,
}

impl PluginRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `plugin`; a name already registered is an error.
    pub fn register(&mut self, plugin: Arc<dyn VolumePlugin>) -> Result<()> {
        if self.plugins.iter().any(|p| p.name() == plugin.name()) {
            return Err(Error::DuplicatePlugin(plugin.name().to_string()));
        }
        self.plugins.push(plugin);
        Ok(())
    }

    /// A registry holding `plugins`, failing on the first duplicate.
    pub fn with(plugins: impl IntoIterator<Item = Arc<dyn VolumePlugin>>) -> Result<Self> {
        let mut registry = Self::new();
        for p in plugins {
            registry.register(p)?;
        }
        Ok(registry)
    }

    /// Adds a dynamic source; its plugins are looked up after the static ones.
    pub fn add_source(&mut self, source: Arc<dyn PluginSource>) {
        self.sources.push(source);
    }

    /// Every plugin usable now: the static ones, then the sources'.
    pub fn all(&self) -> Vec<Arc<dyn VolumePlugin>> {
        let mut all = self.plugins.clone();
        for source in &self.sources {
            all.extend(source.plugins());
        }
        all
    }

    /// The one plugin supporting `spec`.
    pub fn find_by_spec(&self, spec: &VolumeSpec) -> Result<Arc<dyn VolumePlugin>> {
        let all = self.all();
        let matches: Vec<_> = all.iter().filter(|p| p.can_support(spec)).collect();
        match matches.as_slice() {
            [one] => Ok(Arc::clone(one)),
            [] => Err(Error::NoPlugin(format!("no volume plugin matched volume {:?}", spec.name()))),
            many => Err(Error::NoPlugin(format!(
                "multiple volume plugins matched volume {:?}: {}",
                spec.name(),
                many.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")
            ))),
        }
    }

    /// The plugin named `name`.
    pub fn find_by_name(&self, name: &str) -> Result<Arc<dyn VolumePlugin>> {
        self.all()
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::NoPlugin(format!("no volume plugin matched name: {name}")))
    }

    /// The names of the plugins usable now.
    pub fn names(&self) -> Vec<String> {
        self.all().iter().map(|p| p.name().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{empty_dir::EmptyDirPlugin, host_path::HostPathPlugin};
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume};

    #[test]
    fn rejects_a_duplicate_name() {
        let mut r = PluginRegistry::new();
        r.register(Arc::new(EmptyDirPlugin)).unwrap();
        assert!(matches!(r.register(Arc::new(EmptyDirPlugin)), Err(Error::DuplicatePlugin(_))));
    }

    #[test]
    fn finds_the_one_plugin_for_a_spec_and_errors_on_none() {
        let r = PluginRegistry::with([Arc::new(EmptyDirPlugin) as Arc<dyn VolumePlugin>, Arc::new(HostPathPlugin)])
            .unwrap();
        let spec = VolumeSpec::Inline(Box::new(Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }));
        assert_eq!(r.find_by_spec(&spec).unwrap().name(), "kubernetes.io/empty-dir");
        let none = VolumeSpec::Inline(Box::new(Volume { name: "x".into(), ..Default::default() }));
        assert!(r.find_by_spec(&none).is_err());
    }
}
