//! Manifests → Rust tokens (quote) → formatted source (prettyplease).
//!
//! The emitted code names types that the consuming crate defines next to the
//! `include!` (UnitSpec, FileSpec, …); this crate only produces values.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use crate::layout::{FileKind, Source};
use crate::model::{Manifests, APISERVER_DEFAULT_SERVICE_CIDR, OUTPUT_FLAGS};

fn opt(s: &Option<String>) -> TokenStream {
    match s {
        Some(v) => quote!(Some(#v)),
        None => quote!(None),
    }
}

fn strs(v: &[String]) -> TokenStream {
    quote!(&[#(#v),*])
}

fn pairs(m: &std::collections::BTreeMap<String, String>) -> TokenStream {
    let (k, v): (Vec<_>, Vec<_>) = m.iter().unzip();
    quote!(&[#((#k, #v)),*])
}

/// `kube-apiserver` → `KubeApiserver`.
pub fn variant_ident(component: &str) -> Ident {
    let s: String = component.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect();
    Ident::new(&s, Span::call_site())
}

/// `kube-apiserver` → `KUBE_APISERVER`.
pub fn const_ident(component: &str) -> Ident {
    let s: String = component.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    Ident::new(&s, Span::call_site())
}

pub fn tokens(m: &Manifests) -> TokenStream {
    let mut items = Vec::new();

    let kv = &m.layout.kubernetes_version;
    items.push(quote! {
        /// The Kubernetes release the manifests were written for (layout.yaml `kubernetesVersion`).
        pub const KUBERNETES_VERSION: &str = #kv;
    });
    let admin = &m.layout.admin_kubeconfig;
    items.push(quote! {
        /// The admin kubeconfig in the assets directory, the RBAC step's
        /// default credential (layout.yaml `adminKubeconfig`; it stays on the jumpbox).
        pub const ADMIN_KUBECONFIG: &str = #admin;
    });

    // The kinds of placed file, defined here from codegen's own: which are
    // secret is decided once, where layout.yaml is read.
    let kinds: Vec<Ident> = FileKind::ALL.iter().map(|k| Ident::new(k.ident(), Span::call_site())).collect();
    let secret: Vec<Ident> = FileKind::ALL.iter().filter(|k| k.is_secret()).map(|k| Ident::new(k.ident(), Span::call_site())).collect();
    let (default_cidr, output_flags) = (APISERVER_DEFAULT_SERVICE_CIDR, OUTPUT_FLAGS);
    items.push(quote! {
        /// What a placed file holds (layout.yaml `kind`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FileKind { #(#kinds),* }
        impl FileKind {
            /// Holds private key material or credentials: never printed or
            /// diffed, mode 0600 (codegen refuses a layout that says otherwise).
            pub fn is_secret(self) -> bool {
                matches!(self, #(FileKind::#secret)|*)
            }
        }
        /// kube-apiserver's built-in --service-cluster-ip-range when the flag is absent.
        pub const APISERVER_DEFAULT_SERVICE_CIDR: &str = #default_cidr;
        /// Flags whose path the component writes, not reads: they need not exist
        /// before it starts, and nothing uploads them.
        pub const OUTPUT_FLAGS: &[&str] = &[#(#output_flags),*];
    });

    let mut unit_idents = Vec::new();
    let variants: Vec<Ident> = m.components.iter().map(|c| variant_ident(&c.unit.component)).collect();
    let apiserver = m.components.iter().find(|c| c.unit.component == crate::model::APISERVER).map(|c| variant_ident(&c.unit.component)).expect("checked by load");
    let consts: Vec<Ident> = m.components.iter().map(|c| const_ident(&c.unit.component)).collect();
    items.push(quote! {
        /// A control-plane component: one per unit in `manifests/units`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Component { #(#variants),* }
        impl Component {
            /// Every component, in unit file-name order.
            pub const ALL: &'static [Component] = &[#(Component::#variants),*];
            /// Its unit, with every fact the manifests give.
            pub fn spec(self) -> &'static UnitSpec {
                match self { #(Component::#variants => &#consts),* }
            }
        }
        /// The component that serves the API; the others are its clients.
        pub const APISERVER: Component = Component::#apiserver;
    });
    for c in &m.components {
        let u = &c.unit;
        let ident = const_ident(&u.component);
        let variant = variant_ident(&u.component);
        unit_idents.push(ident.clone());
        let description = u.description.as_deref().unwrap_or_default();
        let (component, file_name, manifest, exec, text) = (&u.component, &u.file_name, &c.manifest, &u.exec, &u.text);
        let documentation = opt(&u.documentation);
        let restart = opt(&u.restart);
        let restart_sec = opt(&u.restart_sec);
        let wanted_by = strs(&u.wanted_by);
        let flags = u.flags.iter().map(|f| {
            let (name, value, line) = (&f.name, opt(&f.value), f.line as u32);
            quote!(Flag { name: #name, value: #value, line: #line })
        });
        let paths = c.paths.iter().map(|p| {
            let (path, by, output) = (&p.path, &p.by, p.output);
            quote!(PathRef { path: #path, by: #by, output: #output })
        });
        let (port, bind) = (c.serving_port, &c.bind_address);
        let insecure = match c.insecure_port {
            Some(p) => quote!(Some(#p)),
            None => quote!(None),
        };
        let doc = format!(" `{manifest}`, compiled in.");
        items.push(quote! {
            #[doc = #doc]
            pub const #ident: UnitSpec = UnitSpec {
                component: Component::#variant,
                name: #component,
                file_name: #file_name,
                manifest: #manifest,
                description: #description,
                documentation: #documentation,
                exec: #exec,
                flags: &[#(#flags),*],
                restart: #restart,
                restart_sec: #restart_sec,
                wanted_by: #wanted_by,
                serving_port: #port,
                insecure_port: #insecure,
                bind_address: #bind,
                paths: &[#(#paths),*],
                text: #text,
            };
        });
    }
    items.push(quote! {
        /// Every unit in `manifests/units`, in file-name order.
        pub const UNITS: &[UnitSpec] = &[#(#unit_idents),*];
    });

    let sc = &m.scheduler_config;
    let (sc_manifest, sc_text, sc_api, sc_kc, sc_le, sc_line) =
        (&m.scheduler_config_manifest, &sc.text, &sc.api_version, &sc.kubeconfig, sc.leader_elect, sc.api_version_line as u32);
    items.push(quote! {
        pub const SCHEDULER_CONFIG: SchedulerConfigSpec = SchedulerConfigSpec {
            manifest: #sc_manifest,
            api_version: #sc_api,
            api_version_line: #sc_line,
            kubeconfig: #sc_kc,
            leader_elect: #sc_le,
            text: #sc_text,
        };
    });

    let dirs = m.layout.directories.iter().map(|d| {
        let (p, mode, owned) = (&d.path, d.mode, d.owned);
        quote!(DirSpec { path: #p, mode: #mode, owned: #owned })
    });
    let state_dir = &m.layout.state_dir;
    items.push(quote! {
        /// Directories bootstrap creates (layout.yaml).
        pub const DIRECTORIES: &[DirSpec] = &[#(#dirs),*];
        /// Bootstrap's own directory on the server (layout.yaml `state: true`).
        pub const STATE_DIR: &str = #state_dir;
    });

    let files = m.layout.files.iter().zip(&m.restarts).map(|(f, restarts)| {
        let (dest, mode, owner, group) = (&f.dest, f.mode, &f.owner, &f.group);
        let kind = Ident::new(f.kind.ident(), Span::call_site());
        let source = match &f.source {
            Source::Asset(c) => {
                let c = strs(c);
                quote!(Source::Asset(#c))
            }
            Source::Manifest(p) => {
                let text = &m.sources.iter().find(|(r, _)| r == p).expect("checked by load").1;
                quote!(Source::Manifest { path: #p, text: #text })
            }
        };
        let restarts: Vec<Ident> = restarts.iter().map(|c| variant_ident(c)).collect();
        let restarts = quote!(&[#(Component::#restarts),*]);
        quote!(FileSpec { dest: #dest, mode: #mode, owner: #owner, group: #group, kind: FileKind::#kind, source: #source, restarts: #restarts })
    });
    items.push(quote! {
        /// Every file bootstrap places, where its bytes come from, and which
        /// components restart when it changes (layout.yaml + derived).
        pub const FILES: &[FileSpec] = &[#(#files),*];
    });

    let roles = m.rbac.roles.iter().map(|r| {
        let name = &r.name;
        let (labels, annotations) = (pairs(&r.labels), pairs(&r.annotations));
        let rules = r.rules.iter().map(|x| {
            let (g, res, rn, u, v) = (strs(&x.api_groups), strs(&x.resources), strs(&x.resource_names), strs(&x.non_resource_urls), strs(&x.verbs));
            quote!(RuleSpec { api_groups: #g, resources: #res, resource_names: #rn, non_resource_urls: #u, verbs: #v })
        });
        quote!(ClusterRoleSpec { name: #name, labels: #labels, annotations: #annotations, rules: &[#(#rules),*] })
    });
    let bindings = m.rbac.bindings.iter().map(|b| {
        let (name, role) = (&b.name, &b.role);
        let (labels, annotations) = (pairs(&b.labels), pairs(&b.annotations));
        let subjects = b.subjects.iter().map(|s| {
            let (kind, name, g, ns) = (&s.kind, &s.name, opt(&s.api_group), opt(&s.namespace));
            quote!(SubjectSpec { kind: #kind, name: #name, api_group: #g, namespace: #ns })
        });
        quote!(ClusterRoleBindingSpec { name: #name, labels: #labels, annotations: #annotations, role: #role, subjects: &[#(#subjects),*] })
    });
    items.push(quote! {
        /// ClusterRoles in `manifests/rbac`, validated against k8s-openapi at build time.
        pub const CLUSTER_ROLES: &[ClusterRoleSpec] = &[#(#roles),*];
        /// ClusterRoleBindings in `manifests/rbac`; each roleRef names one of CLUSTER_ROLES.
        pub const CLUSTER_ROLE_BINDINGS: &[ClusterRoleBindingSpec] = &[#(#bindings),*];
    });

    let (cidr, ip) = (&m.service_cidr, &m.service_ip);
    let etcd = strs(&m.etcd_servers);
    items.push(quote! {
        /// kube-apiserver's --service-cluster-ip-range (its default when absent).
        pub const SERVICE_CIDR: &str = #cidr;
        /// The first address of SERVICE_CIDR: the `kubernetes` Service's ClusterIP.
        pub const SERVICE_IP: &str = #ip;
        /// kube-apiserver's --etcd-servers.
        pub const ETCD_SERVERS: &[&str] = #etcd;
    });

    quote!(#(#items)*)
}

/// Formats tokens as a Rust source file with a header naming its origin.
pub fn render(m: &Manifests) -> String {
    let file: syn::File = syn::parse2(tokens(m)).expect("codegen emits valid Rust");
    format!("// @generated by codegen from manifests/ at build time. Do not edit.\n\n{}", prettyplease::unparse(&file))
}
