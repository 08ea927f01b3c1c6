output "container_id" {
  description = "ID of the maestro-runtime container."
  value       = docker_container.maestro.id
}

output "container_name" {
  description = "Name of the container (docker exec NAME list-services)."
  value       = docker_container.maestro.name
}

output "published_ports" {
  description = "Ports published on the host (host port = container port)."
  value       = var.ports
}

output "service_urls" {
  description = "One URL per service whose port is published, in the order of var.services."
  value = [
    for s in var.services : {
      service = coalesce(s.name, s.repo)
      url     = "http://${var.url_host}:${s.port}/"
    } if s.port != null && contains(var.ports, coalesce(s.port, 0))
  ]
}

output "services_file" {
  description = "The rendered services file on the host, mounted at /etc/maestro/services.yml."
  value       = local_file.services.filename
}

output "list_services" {
  description = "The command that lists the services and their state."
  value       = "docker exec ${docker_container.maestro.name} list-services"
}
