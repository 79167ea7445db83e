"""Teams call record archiver: the functions, their triggers, and where their logic lives.

    notifications        POST /api/notifications   Graph change notifications -> queue
    archive_call_record  queue %CALLRECORDS_QUEUE%  fetch the complete record -> one blob

The logic is in shared/: webhook.py (handshake, clientState, queueing), archiver.py (fetch and
write), graph.py (Graph client), archive.py (blob naming and write-if-absent), settings.py.
"""

import azure.functions as func

from shared import archiver, webhook

app = func.FunctionApp()


# Anonymous on purpose: Graph cannot send headers, and the clientState in every notification
# is the secret Graph designed for this (README, "Why the webhook is anonymous").
@app.route(route="notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    return await webhook.handle_notifications(req)


@app.queue_trigger(
    arg_name="msg", queue_name="%CALLRECORDS_QUEUE%", connection="AzureWebJobsStorage"
)
async def archive_call_record(msg: func.QueueMessage) -> None:
    await archiver.handle_message(msg.get_body(), msg.dequeue_count)
